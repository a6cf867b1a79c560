"""Visual signals of the policy: image-token locator, attention probe, hidden states, forward.

Import submodules directly (``visgrpo.attention.probe`` registers the probe with
transformers' ``AttentionInterface`` on import).
"""
