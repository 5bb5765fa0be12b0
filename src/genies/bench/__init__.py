"""Benchmarks of genies' engines against their naive references (`genies bench ...`)."""
