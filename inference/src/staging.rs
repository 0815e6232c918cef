//! Batches of 8-bit images to the model's normalised input on its device.
//!
//! On the CPU the batch is normalised with the preprocessor's tables into one f32 tensor, the
//! same values [`crate::Preprocessor::preprocess`] gives. On CUDA the 8-bit levels are what
//! crosses the bus (a quarter of the f32 bytes):
//! - they are written into a page-locked host buffer taken from a small pool and reused from
//!   batch to batch (a buffer is written again only after its last copy finished: cudarc
//!   waits on the buffer's event);
//! - the copy runs on a stream of its own, so that it overlaps a forward pass already queued
//!   on the model's stream (the model's stream waits for the copy through cudarc's events
//!   before it reads the batch);
//! - the device normalises with the same tables: each level is looked up in a 768-entry f32
//!   table (channel × level), so the normalised pixels equal the CPU's bit for bit, and only
//!   then cast to the model's dtype.
//!
//! Two threads may stage at once (the job keeps two batches in flight on a GPU); each takes
//! its own buffer.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;
use crate::preprocess::{check_input_sizes, CroppedImage, Preprocessor};

/// Turns batches of [`CroppedImage`]s into `(batch, 3, size, size)` tensors in the model's
/// dtype on its device. Cheap to clone (clones share the device's buffers).
#[derive(Debug, Clone)]
pub struct PixelStager {
    device: Device,
    dtype: DType,
    size: usize,
    preprocessor: Preprocessor,
    /// `(768,)` f32 on the device: `table[c * 256 + v]`, and `(1, 3, 1, 1)` u32 `[0, 256, 512]`.
    tables: Option<(Tensor, Tensor)>,
    #[cfg(feature = "cuda")]
    gpu: Option<Arc<gpu::Uploads>>,
    #[cfg(not(feature = "cuda"))]
    gpu: Option<Arc<()>>,
}

impl PixelStager {
    /// A stager for images of `size` x `size` from `preprocessor`, for a model computing in
    /// `dtype` on `device`.
    pub fn new(
        preprocessor: &Preprocessor,
        size: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let mut stager = PixelStager {
            device: device.clone(),
            dtype,
            size,
            preprocessor: preprocessor.clone(),
            tables: None,
            gpu: None,
        };
        if !device.is_cpu() {
            stager.tables = Some(stager.device_tables(device)?);
            #[cfg(feature = "cuda")]
            if let Device::Cuda(cuda) = device {
                stager.gpu = Some(Arc::new(gpu::Uploads::new(cuda)?));
            }
        }
        Ok(stager)
    }

    /// The same stager for another preprocessor (same tables if its normalisation is the
    /// same; rebuilt otherwise).
    pub fn with_preprocessor(mut self, preprocessor: &Preprocessor) -> Result<Self> {
        let same = preprocessor.lut() == self.preprocessor.lut();
        self.preprocessor = preprocessor.clone();
        if !same && self.tables.is_some() {
            self.tables = Some(self.device_tables(&self.device.clone())?);
        }
        Ok(self)
    }

    /// Whether the 8-bit levels are uploaded and normalised on the device (CUDA), rather than
    /// normalised on the host (CPU).
    pub fn normalises_on_device(&self) -> bool {
        self.tables.is_some()
    }

    /// Whether host buffers are page-locked (a CUDA device).
    pub fn pinned(&self) -> bool {
        self.gpu.is_some()
    }

    /// The images as one `(batch, 3, size, size)` tensor in the model's dtype on its device;
    /// an image of another size is an [`crate::Error::InputSize`] naming its position.
    pub fn stage(&self, images: &[CroppedImage]) -> Result<Tensor> {
        let per_image = check_input_sizes(images.iter().map(|i| i.pixels.len()), self.size)?;
        let shape = (images.len(), 3, self.size, self.size);
        let Some((table, offsets)) = &self.tables else {
            let mut data = vec![0f32; per_image * images.len()];
            for (image, out) in images.iter().zip(data.chunks_exact_mut(per_image.max(1))) {
                self.preprocessor.normalize_planar_into(&image.pixels, out);
            }
            return Ok(Tensor::from_vec(data, shape, &self.device)?.to_dtype(self.dtype)?);
        };
        let levels = self.upload(images, per_image)?.reshape(shape)?;
        // Levels + channel offset index the 768-entry table; the lookup is exact.
        let index = levels
            .to_dtype(DType::U32)?
            .broadcast_add(offsets)?
            .flatten_all()?;
        let pixels = table.index_select(&index, 0)?.reshape(shape)?;
        Ok(pixels.to_dtype(self.dtype)?)
    }

    /// The images' levels as a flat u8 tensor on the device.
    fn upload(&self, images: &[CroppedImage], per_image: usize) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let (Some(gpu), Device::Cuda(cuda)) = (&self.gpu, &self.device) {
            return gpu.upload(cuda, images, per_image);
        }
        let mut levels = Vec::with_capacity(per_image * images.len());
        for image in images {
            levels.extend_from_slice(&image.pixels);
        }
        Ok(Tensor::from_vec(
            levels,
            per_image * images.len(),
            &self.device,
        )?)
    }

    fn device_tables(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let flat: Vec<f32> = self.preprocessor.lut().iter().flatten().copied().collect();
        let table = Tensor::from_vec(flat, 768, device)?;
        let offsets = Tensor::from_vec(vec![0u32, 256, 512], (1, 3, 1, 1), device)?;
        Ok((table, offsets))
    }

    /// A stager that normalises through the device path on any device, the CPU included: for
    /// tests that compare it with the host path.
    #[doc(hidden)]
    pub fn with_device_path(mut self) -> Result<Self> {
        self.tables = Some(self.device_tables(&self.device.clone())?);
        Ok(self)
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    //! Page-locked buffers and the copy stream of one CUDA device.

    use std::sync::{Arc, Mutex};

    use candle_core::cuda_backend::cudarc::driver::{CudaStream, PinnedHostSlice};
    use candle_core::cuda_backend::{CudaDevice, CudaStorage};
    use candle_core::{Storage, Tensor};

    use crate::error::{Error, Result};
    use crate::preprocess::CroppedImage;

    /// At most this many idle buffers are kept (two batches in flight, one being filled).
    const KEEP: usize = 3;

    #[derive(Debug)]
    pub(super) struct Uploads {
        copy: Arc<CudaStream>,
        idle: Mutex<Vec<PinnedHostSlice<u8>>>,
    }

    fn cuda_error(e: impl std::fmt::Display) -> Error {
        Error::Worker {
            reason: format!("CUDA upload: {e}"),
        }
    }

    impl Uploads {
        pub(super) fn new(device: &CudaDevice) -> Result<Self> {
            let copy = device
                .cuda_stream()
                .context()
                .new_stream()
                .map_err(cuda_error)?;
            Ok(Uploads {
                copy,
                idle: Mutex::new(Vec::new()),
            })
        }

        /// Copies the batch into a pooled page-locked buffer, then to the device on the copy
        /// stream; returns the flat u8 tensor (the model's stream waits for the copy through
        /// the slice's event when it first reads it).
        pub(super) fn upload(
            &self,
            device: &CudaDevice,
            images: &[CroppedImage],
            per_image: usize,
        ) -> Result<Tensor> {
            let len = per_image * images.len();
            let mut buffer = self.take(device, len)?;
            {
                // Waits for the buffer's last copy to finish before it is written again.
                let host = buffer.as_mut_slice().map_err(cuda_error)?;
                for (image, out) in images.iter().zip(host.chunks_exact_mut(per_image.max(1))) {
                    out.copy_from_slice(&image.pixels);
                }
            }
            // SAFETY: the copy below writes every byte before anything reads the slice.
            let mut slice = unsafe { self.copy.alloc::<u8>(len) }.map_err(cuda_error)?;
            self.copy
                .memcpy_htod(&buffer, &mut slice)
                .map_err(cuda_error)?;
            self.give_back(buffer);
            let storage = CudaStorage::wrap_cuda_slice(slice, device.clone());
            Ok(Tensor::from_storage(
                Storage::Cuda(storage),
                len,
                candle_core::op::BackpropOp::none(),
                false,
            ))
        }

        /// An idle buffer of exactly `len` bytes, or a new one.
        fn take(&self, device: &CudaDevice, len: usize) -> Result<PinnedHostSlice<u8>> {
            if let Ok(mut idle) = self.idle.lock() {
                if let Some(i) = idle.iter().position(|b| b.len() == len) {
                    return Ok(idle.swap_remove(i));
                }
            }
            // SAFETY: the buffer is written in full before it is read (`upload`).
            unsafe { device.cuda_stream().context().alloc_pinned::<u8>(len) }.map_err(cuda_error)
        }

        fn give_back(&self, buffer: PinnedHostSlice<u8>) {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() >= KEEP {
                    idle.remove(0);
                }
                idle.push(buffer);
            }
        }
    }
}
