//! How a model's `[tokens, dim]` output becomes one embedding per image.

/// How a `[batch, tokens, dim]` output becomes one vector per image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooling {
    /// The first token (`[CLS]`), as `pooler_output` of DINOv2 and ViT is taken from.
    #[default]
    Cls,
    /// The mean over all tokens.
    Mean,
}

impl std::str::FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            other => Err(format!("unknown pooling {other:?}: expected cls or mean")),
        }
    }
}

impl Pooling {
    /// Its name (`cls`, `mean`).
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        }
    }
}
