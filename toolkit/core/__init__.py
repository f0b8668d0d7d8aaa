"""What every layer shares: user-facing errors (`errors`), the typed graft and decoding options
(`options`), process settings (`runtime`: threads, allocator, compile) and the one answer
extractor of the tasks (`answers`)."""
