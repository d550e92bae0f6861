"""The VideoMaMa teacher: SVD UNet + temporal VAE with mask conditioning (FIELD_GUIDE §1)."""
