//! `upload-images`: a folder to a location, tutorial naming, and skipping what is there.

use std::process::Command;

fn upload(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_upload-images"))
        .args(args)
        .output()
        .expect("run upload-images");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn uploads_once_and_skips_objects_already_present() {
    let src = tempfile::tempdir().expect("src");
    let dst = tempfile::tempdir().expect("dst");
    std::fs::create_dir_all(src.path().join("val")).expect("mkdir");
    std::fs::write(src.path().join("val/000000000139.jpg"), b"abc").expect("write");
    std::fs::write(src.path().join("val/000000000285.jpg"), b"defg").expect("write");
    let dest = format!("{}/coco", dst.path().display());
    let first = upload(&[src.path().to_str().unwrap(), &dest, "--strip-leading-zeros"]);
    assert_eq!(
        first.trim(),
        "uploaded 2 files (7 bytes), skipped 0 already present"
    );
    assert_eq!(
        std::fs::read(dst.path().join("coco/val/139.jpg")).expect("uploaded"),
        b"abc"
    );
    assert!(dst.path().join("coco/val/285.jpg").is_file());
    // Same names and sizes: nothing to do. A changed size is uploaded again.
    std::fs::write(src.path().join("val/000000000285.jpg"), b"defgh").expect("write");
    let second = upload(&[src.path().to_str().unwrap(), &dest, "--strip-leading-zeros"]);
    assert_eq!(
        second.trim(),
        "uploaded 1 files (5 bytes), skipped 1 already present"
    );
}
