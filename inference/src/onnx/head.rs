//! What a task reads from any ONNX model's outputs: which output, and how it becomes labels or
//! an embedding (pure functions, tested on their own).

use super::session::OutputInfo;
use crate::classifier::{most_probable, Prediction};
use crate::pooling::Pooling;

fn names(outputs: &[OutputInfo]) -> String {
    let list: Vec<String> = outputs
        .iter()
        .map(|o| format!("{} {}", o.name, shape_text(&o.dims)))
        .collect();
    list.join(", ")
}

/// `[batch, 1000]`, with `?` for a dynamic axis.
pub fn shape_text(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn by_name<'a>(outputs: &'a [OutputInfo], name: &str) -> Result<&'a OutputInfo, String> {
    outputs.iter().find(|o| o.name == name).ok_or_else(|| {
        format!(
            "the model has no output {name:?}; its outputs are {}",
            names(outputs)
        )
    })
}

/// The output `classify` reads: `named` when given, else `logits`, else the only
/// `[batch, classes]` output.
pub fn classify_output<'a>(
    outputs: &'a [OutputInfo],
    named: Option<&str>,
) -> Result<&'a OutputInfo, String> {
    let found = match named {
        Some(name) => by_name(outputs, name)?,
        None => match outputs.iter().find(|o| o.name == "logits") {
            Some(o) => o,
            None => {
                let two: Vec<&OutputInfo> = outputs.iter().filter(|o| o.dims.len() == 2).collect();
                match two.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(format!(
                            "classify needs an output named logits or exactly one [batch, classes] \
                             output; the model's outputs are {}",
                            names(outputs)
                        ))
                    }
                }
            }
        },
    };
    if found.dims.len() != 2 {
        return Err(format!(
            "output {} has shape {}; classify needs [batch, classes]",
            found.name,
            shape_text(&found.dims)
        ));
    }
    Ok(found)
}

/// The output `embed` reads: `named` when given, else `image_embeds`, else `pooler_output`,
/// else the first `[batch, dim]` output, else the first `[batch, tokens, dim]` output (pooled).
pub fn embed_output<'a>(
    outputs: &'a [OutputInfo],
    named: Option<&str>,
) -> Result<&'a OutputInfo, String> {
    let found = match named {
        Some(name) => by_name(outputs, name)?,
        None => ["image_embeds", "pooler_output"]
            .iter()
            .find_map(|n| outputs.iter().find(|o| o.name == *n))
            .or_else(|| outputs.iter().find(|o| o.dims.len() == 2))
            .or_else(|| outputs.iter().find(|o| o.dims.len() == 3))
            .ok_or_else(|| {
                format!(
                    "embed needs a [batch, dim] or [batch, tokens, dim] output; the model's \
                     outputs are {}",
                    names(outputs)
                )
            })?,
    };
    if !(found.dims.len() == 2 || found.dims.len() == 3) {
        return Err(format!(
            "output {} has shape {}; embed needs [batch, dim] or [batch, tokens, dim]",
            found.name,
            shape_text(&found.dims)
        ));
    }
    Ok(found)
}

/// Softmax over `logits` (in `f32`, as the candle classifier computes it) and the `k` most
/// probable classes, ties by index; `labels[i]` names class `i`, the index itself where
/// `labels` has no entry.
pub fn softmax_top_k(logits: &[f32], k: usize, labels: &[String]) -> Vec<Prediction> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    let probs: Vec<f32> = exps.iter().map(|e| e / sum).collect();
    most_probable(&probs, k, labels)
}

/// One image's embedding from its row of an output whose per-image dims are `item_dims`:
/// `[dim]` as it is, `[tokens, dim]` pooled.
pub fn pool(row: &[f32], item_dims: &[usize], pooling: Pooling) -> Vec<f32> {
    match item_dims {
        [tokens, dim] if *tokens > 0 && *dim > 0 => match pooling {
            Pooling::Cls => row.get(..*dim).unwrap_or(row).to_vec(),
            Pooling::Mean => {
                let mut mean = vec![0f32; *dim];
                for token in row.chunks_exact(*dim) {
                    for (m, v) in mean.iter_mut().zip(token) {
                        *m += v;
                    }
                }
                let n = *tokens as f32;
                mean.iter_mut().for_each(|m| *m /= n);
                mean
            }
        },
        _ => row.to_vec(),
    }
}

/// Divides `v` by its L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::Element;

    fn out(name: &str, dims: &[Option<usize>]) -> OutputInfo {
        OutputInfo {
            name: name.into(),
            element: Element::F32,
            dims: dims.to_vec(),
        }
    }

    #[test]
    fn classify_prefers_logits_then_the_only_matrix() {
        let outs = [
            out("hidden", &[None, Some(4), Some(8)]),
            out("logits", &[None, Some(5)]),
        ];
        assert_eq!(classify_output(&outs, None).unwrap().name, "logits");
        let outs = [
            out("a", &[None, Some(4), Some(8)]),
            out("probs", &[None, Some(5)]),
        ];
        assert_eq!(classify_output(&outs, None).unwrap().name, "probs");
        let outs = [out("a", &[None, Some(4)]), out("b", &[None, Some(5)])];
        let err = classify_output(&outs, None).unwrap_err();
        assert!(
            err.contains("exactly one [batch, classes]") && err.contains("a [?, 4]"),
            "{err}"
        );
        assert_eq!(classify_output(&outs, Some("b")).unwrap().name, "b");
        assert!(classify_output(&outs, Some("c"))
            .unwrap_err()
            .contains("no output \"c\""));
    }

    #[test]
    fn embed_prefers_image_embeds_then_pooler_then_vectors_then_tokens() {
        let tokens = out("last_hidden_state", &[None, None, Some(8)]);
        let pooled = out("pooler_output", &[None, Some(8)]);
        let embeds = out("image_embeds", &[None, Some(4)]);
        let other = out("z", &[None, Some(3)]);
        let pick = |o: &[OutputInfo]| embed_output(o, None).unwrap().name.clone();
        assert_eq!(pick(std::slice::from_ref(&tokens)), "last_hidden_state");
        assert_eq!(pick(&[tokens.clone(), other.clone()]), "z");
        assert_eq!(
            pick(&[tokens.clone(), other.clone(), pooled.clone()]),
            "pooler_output"
        );
        assert_eq!(pick(&[pooled, tokens.clone(), embeds]), "image_embeds");
        assert!(embed_output(&[out("s", &[None])], None).is_err());
        assert_eq!(embed_output(&[tokens, other], Some("z")).unwrap().name, "z");
    }

    #[test]
    fn softmax_top_k_orders_by_probability_then_index() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let p = softmax_top_k(&[1.0, 3.0, 3.0], 3, &labels);
        let got: Vec<(&str, usize)> = p.iter().map(|p| (p.label.as_str(), p.index)).collect();
        assert_eq!(got, [("b", 1), ("2", 2), ("a", 0)]);
        let total: f32 = p.iter().map(|p| p.probability).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(softmax_top_k(&[0.0], 5, &[]).len(), 1);
    }

    #[test]
    fn pooling_takes_the_first_token_or_the_mean() {
        let row = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(pool(&row, &[3, 2], Pooling::Cls), vec![1.0, 2.0]);
        assert_eq!(pool(&row, &[3, 2], Pooling::Mean), vec![3.0, 4.0]);
        assert_eq!(pool(&row, &[6], Pooling::Mean), row.to_vec());
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut z = [0.0, 0.0];
        l2_normalize(&mut z);
        assert_eq!(z, [0.0, 0.0]);
    }
}
