"""``visgrpo plan``: what a recipe needs in GPU memory, before the GPU hours.

The recipe's model is built on the meta device from its configuration (a local
``config.json``, a tiny model or one of the published configs shipped in
``visgrpo/plan/published``), LoRA is applied there through peft, and the memory of one RL
step is estimated per GPU count (:mod:`visgrpo.plan.memory`); ``visgrpo plan --config ...``
prints it (:mod:`visgrpo.plan.cli`). docs/recipes.md, "visgrpo plan".
"""
