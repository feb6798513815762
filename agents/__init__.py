"""The bundled LLM agent: GRPO, DAPO, GRPO+Entropy and MEDS training of a causal LM on meds-gym.

Run from a clone: ``python -m agents.compare`` (the main job: DAPO+MEDS against DAPO from the same
warmed-up tiny model, ending with ``report.md`` and a pass@k plot), ``python -m agents.ppo --help``
(training), ``python -m agents.evaluate --help`` (pass@k and error modes of a model),
``python -m agents.tiny_model --help`` (build the offline default model). The shared pieces are
plain modules: ``losses`` (advantages and policy losses), ``evaluation`` (pass@k, diversity,
cluster agreement), ``fingerprint`` (the MEDS answer fingerprint taken during the log-prob pass),
``policy`` (loading a model, sampling and scoring responses), ``checkpoint`` (bit-exact resume),
``report`` (the markdown table and pass@k plot of a run) and ``tiny_model`` (the character
tokenizer and tiny model).
"""
