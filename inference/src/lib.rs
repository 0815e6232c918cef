//! Vision Transformer inference with candle (work in progress).
