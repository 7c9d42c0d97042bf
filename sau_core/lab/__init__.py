"""The lab's measured knowledge: per-data-set recipes (:mod:`.recipes`, torch-free so ``sau --help``
stays fast), the demo and lesson presets (:mod:`.presets`), the warnings measured where SAU and
training are weak (:mod:`.caveats`), and the ready-made backdoored checkpoints (:mod:`.ready`).

Nothing is imported here: ``sau_core.lab.recipes`` must load without torch.
"""
