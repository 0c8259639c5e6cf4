"""Reading recordings and writing results: readers (read, montage, quality) and writers (write, export)."""
