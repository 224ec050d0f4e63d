"""`output_perturbation`: request guards on logprobs/logit_bias/n/temperature, and
keyed rewrites of what the model returns (logprobs, reasoning, watermark)."""
