"""Model configurations: the official VideoMaMa/SVD-XT configs and a tiny one of the same classes."""
from __future__ import annotations

#: SVD-XT UNet as VideoMaMa uses it: ``conv_in`` widened to 12 inputs (noise | RGB latent | mask latent).
OFFICIAL_UNET_CONFIG = dict(
    sample_size=96,
    in_channels=12,
    out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    block_out_channels=(320, 640, 1280, 1280),
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768,
    layers_per_block=2,
    cross_attention_dim=1024,
    transformer_layers_per_block=1,
    num_attention_heads=(5, 10, 20, 20),
    num_frames=25,
)
#: parameter count of the official UNet at 12 inputs (FIELD_GUIDE §1: 1,524,623,082 at 8 + 11,520)
OFFICIAL_UNET_PARAMS_12 = 1_524_634_602

#: SVD-XT temporal-decoder VAE.
OFFICIAL_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=768,
    scaling_factor=0.18215,
    force_upcast=True,
)

#: Tiny configs of the same classes, for tests and demos (random weights, CPU-fast at 64–128 px).
TINY_UNET_CONFIG = dict(
    sample_size=16,
    in_channels=12,
    out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    block_out_channels=(32, 64),
    addition_time_embed_dim=32,
    projection_class_embeddings_input_dim=96,
    layers_per_block=1,
    cross_attention_dim=32,
    transformer_layers_per_block=1,
    num_attention_heads=(2, 4),
    num_frames=8,
)
# 4 encoder blocks -> the same 8x spatial downscale as the real VAE, so sizes behave the same.
TINY_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(32, 32, 32, 32),
    layers_per_block=1,
    latent_channels=4,
    sample_size=128,
    scaling_factor=0.18215,
    force_upcast=True,
)

#: VideoMaMa-conditioned UNets take 12 (mask VAE-encoded) or 9 (mask resized to latent size) inputs.
SUPPORTED_IN_CHANNELS = (12, 9)

#: SVD-XT's scheduler config (used only for ``steps > 1``).
SVD_SCHEDULER_CONFIG = dict(
    beta_end=0.012,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    interpolation_type="linear",
    num_train_timesteps=1000,
    prediction_type="v_prediction",
    sigma_max=700.0,
    sigma_min=0.002,
    steps_offset=1,
    timestep_spacing="leading",
    timestep_type="continuous",
    trained_betas=None,
    use_karras_sigmas=True,
)
