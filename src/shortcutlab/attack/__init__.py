"""Task 5: targeted attacks, the minimal epsilon per image, and masked variants.

``create_attack(name, model, ...)`` builds ``fgsm``, ``pgd`` (L-inf), ``pgd-l2``,
``apgd-ce`` or ``apgd-dlr`` (Auto-PGD, L-inf) or ``color-shift`` (one RGB shift per image);
:func:`minimal_epsilon` bisects the smallest epsilon per image, for a whole batch at
once; :func:`region_mask` turns the dataset's digit masks into background-only or
digit-only perturbation masks; :func:`run_attack` is ``shortcutlab attack``.
"""

from shortcutlab.attack.apgd import APGD, APGDCE, APGDDLR
from shortcutlab.attack.attacks import (
    FGSM,
    PGD,
    PGDL2,
    attack_class,
    create_attack,
    list_attacks,
    register_attack,
)
from shortcutlab.attack.base import Attack, AttackResult, StepContext, eval_mode
from shortcutlab.attack.color import ColorShift
from shortcutlab.attack.experiment import (
    REGIONS,
    AttackSettings,
    paired_comparison,
    region_mask,
    run_attack,
    source_images,
)
from shortcutlab.attack.minimal import MinimalEpsilon, minimal_epsilon

__all__ = [
    "APGD", "APGDCE", "APGDDLR", "FGSM", "PGD", "PGDL2", "REGIONS", "Attack", "AttackResult",
    "AttackSettings", "ColorShift", "MinimalEpsilon", "StepContext", "attack_class",
    "create_attack", "eval_mode", "list_attacks",
    "minimal_epsilon", "paired_comparison", "region_mask", "register_attack", "run_attack",
    "source_images",
]
