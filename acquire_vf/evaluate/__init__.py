"""Evaluation with the paper's metrics."""

from acquire_vf.evaluate._metrics import image_metrics, mae, psnr, ssim, to_unit

__all__ = ["image_metrics", "mae", "psnr", "ssim", "to_unit"]
