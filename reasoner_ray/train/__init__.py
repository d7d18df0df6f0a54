"""SFT and DPO for VLMs on Ray Train with DeepSpeed (the paper's SFT and DPO steps, arXiv 2410.16198).

Entry points (each imports torch / Ray / DeepSpeed lazily, inside the function):
- `reasoner_ray.train.sft.run_sft(config, model_path, train_rows_path, out_dir) -> TrainResult`
- `reasoner_ray.train.dpo.run_dpo(config, policy_path, pairs_path, out_dir) -> TrainResult`
- `reasoner_ray.train.reference.compute_reference_logps(config, ref_model_path, pairs_path, out_path) -> counts`

Pure pieces: `losses` (DPO loss registry + TRL-named metrics), `logprobs` (per-sequence log-probs), `collate`
(processor + chat template, loss on assistant tokens only), `deepspeed_config` (typed config -> DeepSpeed dict).
"""
