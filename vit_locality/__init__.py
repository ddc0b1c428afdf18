"""vit-locality: train ViTs from scratch and measure attention locality (MAD, entropy)."""
