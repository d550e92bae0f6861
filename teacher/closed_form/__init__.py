"""The CPU reference teacher: adaptive trimap + closed-form matting (pymatting) per frame."""
