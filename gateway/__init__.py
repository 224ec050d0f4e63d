"""distill-guard: an API gateway that defends a model against distillation."""
