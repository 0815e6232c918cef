//! One ONNX model in an ONNX Runtime session: its image input, its outputs, the execution
//! provider it runs on, and batches in and out as plain `f32`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::runtime::{runtime, site_packages};
use crate::device::DeviceSpec;
use crate::error::{Error, Result};

/// The element type of a tensor we feed or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// 32-bit float.
    F32,
    /// 16-bit float (the model's input is converted from `f32`, its outputs back to `f32`).
    F16,
    /// Another numeric type (outputs only: read as `f32`).
    Other(&'static str),
}

/// The model's image input: `[batch, 3, height, width]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// Its name in the graph.
    pub name: String,
    /// Its element type (`f32` or `f16`).
    pub element: Element,
    /// A fixed batch size, or `None` for a dynamic batch axis.
    pub batch: Option<usize>,
    /// A fixed height, or `None` when the graph leaves it open.
    pub height: Option<u32>,
    /// A fixed width, or `None` when the graph leaves it open.
    pub width: Option<u32>,
}

/// One output of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputInfo {
    /// Its name in the graph.
    pub name: String,
    /// Its element type.
    pub element: Element,
    /// Its dimensions as the graph declares them (`None`: dynamic).
    pub dims: Vec<Option<usize>>,
}

impl OutputInfo {
    /// The dimensions after the batch axis, when all are fixed (`[classes]`, `[tokens, dim]`).
    pub fn item_dims(&self) -> Option<Vec<usize>> {
        self.dims.iter().skip(1).copied().collect()
    }
}

/// One output of a run, for the images of the batch: `shape[0]` of them, each
/// `data.len() / shape[0]` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// The output's name.
    pub name: String,
    /// Its shape, batch first (padding rows removed).
    pub shape: Vec<usize>,
    /// Its values as `f32`.
    pub data: Vec<f32>,
}

impl OutputTensor {
    /// The values of image `i` of the batch.
    pub fn row(&self, i: usize) -> &[f32] {
        let per = self.item_len();
        self.data.get(i * per..(i + 1) * per).unwrap_or(&[])
    }

    /// Values per image.
    pub fn item_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// Where and how a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionOptions {
    /// `cpu`, `cuda:N` (the CUDA provider, an error when it cannot be registered), or `auto`
    /// (CUDA where ONNX Runtime's CUDA provider and a GPU are both there, else the CPU).
    pub device: DeviceSpec,
    /// Threads of ONNX Runtime's intra-op pool on the CPU (0: ONNX Runtime's own default).
    pub threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
            threads: 0,
        }
    }
}

impl SessionOptions {
    /// Sets [`device`](Self::device).
    #[must_use]
    pub fn with_device(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    /// Sets [`threads`](Self::threads).
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

/// The provider a session was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's CPU provider with this many intra-op threads (0: its default).
    Cpu(usize),
    /// The CUDA provider on this device.
    Cuda(usize),
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Cpu(0) => write!(f, "CPUExecutionProvider"),
            Provider::Cpu(n) => write!(f, "CPUExecutionProvider ({n} threads)"),
            Provider::Cuda(n) => write!(f, "CUDAExecutionProvider (device {n})"),
        }
    }
}

/// A loaded ONNX model. `run` takes normalised `f32` pixels, `[n, 3, h, w]`, and returns every
/// output for exactly those `n` images: a fixed batch axis is filled with zero images and the
/// padding's rows dropped, larger batches are split.
#[derive(Debug)]
pub struct OnnxSession {
    // `Session::run` takes `&mut self`: one run at a time per session.
    session: Mutex<Session>,
    path: PathBuf,
    input: ImageInput,
    outputs: Vec<OutputInfo>,
    provider: Provider,
}

impl OnnxSession {
    /// Loads `path` (an `.onnx` file) on the provider `options` names. The graph must have one
    /// input, an image `[batch, 3, h, w]` in `f32` or `f16`.
    pub fn load(path: &Path, options: &SessionOptions) -> Result<Self> {
        let rt = runtime()?;
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let ort_err = |what: &str, e: &dyn std::fmt::Display| Error::OnnxRuntime {
            what: format!("{what} {}", path.display()),
            reason: e.to_string(),
        };
        let provider = provider_for(options)?;
        let mut builder = Session::builder(rt.environment())
            .map_err(|e| ort_err("creating a session for", &e))?;
        builder = match provider {
            Provider::Cpu(threads) => {
                // The arena allocator on, as ONNX Runtime's own default and its Python API
                // have it: `ort`'s CPU provider turns it off unless asked, and every run then
                // allocates its activations afresh (6-8 % of ResNet-50's time on 2 cores).
                let cpu = ort::ep::CPU::default().with_arena_allocator(true);
                let b = builder.with_execution_providers([cpu.build()]);
                let b = b.map_err(|e| ort_err("choosing the CPU provider for", &e))?;
                // No spinning: idle intra-op threads would take the cores the decode pool
                // shares with them (measured: no difference to the model alone). Every graph
                // optimisation, as ONNX Runtime's Python API does by default.
                let b = b
                    .with_intra_op_spinning(false)
                    .map_err(|e| ort_err("configuring the threads of", &e))?
                    .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
                    .map_err(|e| ort_err("configuring", &e))?;
                if threads > 0 {
                    b.with_intra_threads(threads)
                        .map_err(|e| ort_err("setting the threads of", &e))?
                        .with_inter_threads(1)
                        .map_err(|e| ort_err("setting the threads of", &e))?
                } else {
                    b
                }
            }
            Provider::Cuda(device) => {
                preload_cuda_libraries()?;
                builder
                    .with_execution_providers([ort::ep::CUDA::default()
                        .with_device_id(device as i32)
                        .build()
                        .error_on_failure()])
                    .map_err(|e| Error::OnnxProvider {
                        provider: "CUDAExecutionProvider".into(),
                        reason: e.to_string(),
                    })?
            }
        };
        let session = builder
            .commit_from_file(path)
            .map_err(|e| Error::OnnxModel {
                path: path.to_path_buf(),
                reason: format!("ONNX Runtime cannot load it: {e}"),
            })?;
        let input = image_input(&session, path)?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| output_info(o.name(), o.dtype()))
            .collect();
        Ok(Self {
            session: Mutex::new(session),
            path: path.to_path_buf(),
            input,
            outputs,
            provider,
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image input.
    pub fn input(&self) -> &ImageInput {
        &self.input
    }

    /// The outputs, in the graph's order.
    pub fn outputs(&self) -> &[OutputInfo] {
        &self.outputs
    }

    /// The provider it runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Runs `n` images of `3 x height x width` normalised pixels (`pixels.len() == n * 3 * h * w`)
    /// and returns every output, batch first, for exactly those `n` images.
    pub fn run(
        &self,
        pixels: Vec<f32>,
        n: usize,
        height: u32,
        width: u32,
    ) -> Result<Vec<OutputTensor>> {
        let per = 3 * height as usize * width as usize;
        if pixels.len() != n * per {
            return Err(Error::InputSize {
                index: 0,
                expected: n * per,
                found: pixels.len(),
                size: height as usize,
            });
        }
        // The whole batch in one run, as it is (no copy): a dynamic batch axis, or a fixed one
        // of exactly n.
        if self.input.batch.is_none_or(|b| b == n) {
            return self.run_once(pixels, n, height, width);
        }
        let step = self.input.batch.unwrap_or(n.max(1)).max(1);
        let mut parts: Vec<Vec<OutputTensor>> = Vec::new();
        for start in (0..n).step_by(step) {
            let count = step.min(n - start);
            let mut chunk = pixels[start * per..(start + count) * per].to_vec();
            // A fixed batch axis: fill with zero images; their rows are dropped below.
            let feed = self.input.batch.unwrap_or(count);
            chunk.resize(feed * per, 0.0);
            let mut outs = self.run_once(chunk, feed, height, width)?;
            for o in &mut outs {
                if o.shape.first().copied() == Some(feed) && feed != count {
                    let item = o.item_len();
                    o.data.truncate(count * item);
                    o.shape[0] = count;
                }
            }
            parts.push(outs);
        }
        Ok(concat(parts))
    }

    fn run_once(
        &self,
        chunk: Vec<f32>,
        feed: usize,
        height: u32,
        width: u32,
    ) -> Result<Vec<OutputTensor>> {
        let shape = [feed as i64, 3, i64::from(height), i64::from(width)];
        let run_err = |e: &dyn std::fmt::Display| Error::OnnxRuntime {
            what: format!("running {}", self.path.display()),
            reason: e.to_string(),
        };
        let value: ort::value::DynValue = match self.input.element {
            Element::F16 => {
                let half: Vec<half::f16> = chunk.iter().map(|&v| half::f16::from_f32(v)).collect();
                ort::value::Tensor::from_array((shape, half))
                    .map_err(|e| run_err(&e))?
                    .into_dyn()
            }
            _ => ort::value::Tensor::from_array((shape, chunk))
                .map_err(|e| run_err(&e))?
                .into_dyn(),
        };
        let mut session = self.session.lock().map_err(|_| Error::Worker {
            reason: "an earlier ONNX run panicked".into(),
        })?;
        let outputs = session
            .run(ort::inputs![self.input.name.as_str() => value])
            .map_err(|e| run_err(&e))?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for info in &self.outputs {
            let Some(value) = outputs.get(info.name.as_str()) else {
                continue;
            };
            result.push(read_output(&info.name, value).map_err(|e| run_err(&e))?);
        }
        Ok(result)
    }
}

/// Concatenates the outputs of several runs along the batch axis.
fn concat(parts: Vec<Vec<OutputTensor>>) -> Vec<OutputTensor> {
    let mut iter = parts.into_iter();
    let Some(mut first) = iter.next() else {
        return Vec::new();
    };
    for part in iter {
        for (acc, more) in first.iter_mut().zip(part) {
            if !acc.shape.is_empty() && !more.shape.is_empty() {
                acc.shape[0] += more.shape[0];
            }
            acc.data.extend(more.data);
        }
    }
    first
}

/// An output value as `f32` with its shape.
fn read_output(
    name: &str,
    value: &ort::value::DynValue,
) -> std::result::Result<OutputTensor, String> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(format!("output {name} is not a tensor"));
    };
    macro_rules! as_f32 {
        ($t:ty, $conv:expr) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| format!("output {name}: {e}"))?;
            (shape.clone(), data.iter().map($conv).collect::<Vec<f32>>())
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Float32 => as_f32!(f32, |v: &f32| *v),
        TensorElementType::Float16 => as_f32!(half::f16, |v: &half::f16| v.to_f32()),
        TensorElementType::Float64 => as_f32!(f64, |v: &f64| *v as f32),
        TensorElementType::Int64 => as_f32!(i64, |v: &i64| *v as f32),
        TensorElementType::Int32 => as_f32!(i32, |v: &i32| *v as f32),
        TensorElementType::Bool => as_f32!(bool, |v: &bool| f32::from(u8::from(*v))),
        other => {
            return Err(format!(
                "output {name} has element type {other:?}, not a number"
            ))
        }
    };
    Ok(OutputTensor {
        name: name.to_string(),
        shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
        data,
    })
}

fn element(ty: TensorElementType) -> Element {
    match ty {
        TensorElementType::Float32 => Element::F32,
        TensorElementType::Float16 => Element::F16,
        TensorElementType::Float64 => Element::Other("f64"),
        TensorElementType::Int64 => Element::Other("i64"),
        TensorElementType::Int32 => Element::Other("i32"),
        TensorElementType::Bool => Element::Other("bool"),
        _ => Element::Other("other"),
    }
}

fn output_info(name: &str, ty: &ValueType) -> OutputInfo {
    match ty {
        ValueType::Tensor { ty, shape, .. } => OutputInfo {
            name: name.to_string(),
            element: element(*ty),
            dims: shape
                .iter()
                .map(|&d| (d > 0).then_some(d as usize))
                .collect(),
        },
        _ => OutputInfo {
            name: name.to_string(),
            element: Element::Other("not a tensor"),
            dims: Vec::new(),
        },
    }
}

/// The graph's one image input, checked: `[batch, 3, h, w]`, `f32` or `f16`.
fn image_input(session: &Session, path: &Path) -> Result<ImageInput> {
    let unusable = |reason: String| Error::OnnxModel {
        path: path.to_path_buf(),
        reason,
    };
    let inputs = session.inputs();
    let [input] = inputs else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
        return Err(unusable(format!(
            "it takes {} inputs ({names:?}); an image model takes one, [batch, 3, height, width]",
            names.len()
        )));
    };
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(unusable(format!("input {} is not a tensor", input.name())));
    };
    let element = match element(*ty) {
        e @ (Element::F32 | Element::F16) => e,
        _ => {
            return Err(unusable(format!(
                "input {} is {ty:?}; we feed float32 or float16 pixels",
                input.name()
            )))
        }
    };
    let dims: Vec<i64> = shape.iter().copied().collect();
    if dims.len() != 4 || !(dims[1] == 3 || dims[1] < 0) {
        return Err(unusable(format!(
            "input {} has shape {dims:?}; we feed images as [batch, 3, height, width] (NCHW)",
            input.name()
        )));
    }
    let fixed = |d: i64| (d > 0).then_some(d as usize);
    Ok(ImageInput {
        name: input.name().to_string(),
        element,
        batch: fixed(dims[0]),
        height: fixed(dims[2]).map(|d| d as u32),
        width: fixed(dims[3]).map(|d| d as u32),
    })
}

/// The provider `options` ask for; `auto` takes CUDA only where the runtime has its CUDA
/// provider library and a GPU driver is there.
fn provider_for(options: &SessionOptions) -> Result<Provider> {
    match options.device {
        DeviceSpec::Cpu => Ok(Provider::Cpu(options.threads)),
        DeviceSpec::Cuda(n) => Ok(Provider::Cuda(n)),
        DeviceSpec::Auto => {
            let rt = runtime()?;
            let has_provider = rt
                .path()
                .parent()
                .is_some_and(|d| d.join("libonnxruntime_providers_cuda.so").is_file());
            let has_gpu = Path::new("/dev/nvidia0").exists();
            Ok(if has_provider && has_gpu {
                Provider::Cuda(0)
            } else {
                Provider::Cpu(options.threads)
            })
        }
    }
}

/// The CUDA provider's libraries (CUDA runtime, cuBLAS, cuDNN, …) from NVIDIA's wheels in the
/// active Python environment (`site-packages/nvidia/*/lib`), loaded before the provider so that
/// it finds them; a library found nowhere is left to the system's search path, and the
/// provider's registration (with `error_on_failure`) names what is still missing.
fn preload_cuda_libraries() -> Result<()> {
    let wanted = ort::ep::cuda::CUDA_DYLIBS
        .iter()
        .chain(ort::ep::cuda::CUDNN_DYLIBS.iter());
    let lib_dirs: Vec<PathBuf> = site_packages()
        .into_iter()
        .filter_map(|site| std::fs::read_dir(site.join("nvidia")).ok())
        .flat_map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("lib")))
        .filter(|d| d.is_dir())
        .collect();
    for name in wanted {
        if let Some(path) = lib_dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            ort::util::preload_dylib(&path).map_err(|e| Error::OnnxProvider {
                provider: "CUDAExecutionProvider".into(),
                reason: format!("cannot load {}: {e}", path.display()),
            })?;
        }
    }
    Ok(())
}
