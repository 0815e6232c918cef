//! The `classify` binary on the fixture model and images.

use std::process::Command;

#[test]
fn classify_prints_csv_rows_and_reports_bad_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "not an image").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_classify"))
        .args([
            "--model",
            root.join("inference/fixtures/tiny-vit").to_str().unwrap(),
            "--device",
            "cpu",
            "--top-k",
            "2",
        ])
        .arg(root.join("inference/fixtures/images/rgb.jpg"))
        .arg(&bad)
        .output()
        .expect("run classify");
    assert_eq!(out.status.code(), Some(3), "a bad file gives exit code 3");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "file,label,probability");
    assert_eq!(
        lines.len(),
        3,
        "two predictions for the one good image: {stdout}"
    );
    assert!(lines[1].contains("rgb.jpg,"));
    let p1: f32 = lines[1]
        .rsplit(',')
        .next()
        .unwrap()
        .parse()
        .expect("probability");
    let p2: f32 = lines[2]
        .rsplit(',')
        .next()
        .unwrap()
        .parse()
        .expect("probability");
    assert!(p1 >= p2 && p1 <= 1.0 && p2 >= 0.0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("notes.txt"));
}
