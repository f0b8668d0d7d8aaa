"""Where base models come from: Hub ids and local paths (`hub`), named real models prepared
once into the cache (`presets`) from PyPI wheels (`wheels`), and GGUF files dequantized into a
transformers model (`gguf`)."""
