"""LPO (Latent Preference Optimization) for the AdaptiveDecoder head (docs/methods.md section 6).

collect (`collect.collect_pairs`) -> feature cache (`cache.build_cache`) -> Lightning training
(`train.train_head`, `module.HeadLPOModule`) -> export into an AugmentedModel checkpoint.
`losses` is pure torch; `synthetic` is a built-in task with a known best temperature.
"""
