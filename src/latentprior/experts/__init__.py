"""Where demonstrations come from: experts behind one interface, :class:`Expert`.

- :class:`MLPExpert` (``mlp.py``): a SAC/TQC-style deterministic actor, e.g. imported from a
  stable-baselines3 zoo ``.zip`` with :func:`load_sb3_zoo` (``sb3_zoo.py``, no SB3 needed);
- :class:`OscillatorExpert` (``oscillator.py``): an open-loop sine-wave gait fitted with CMA-ES by
  :func:`fit_oscillator`, cheap demonstrations in minutes; :func:`default_expert` ships one;
- :class:`PolicyExpert` (``trained.py``): a policy trained with the project's own PPO/SAC;
- :class:`CommandedExpert` (``commanded.py``): one velocity-command-conditioned policy per robot,
  trained in one RL run by :func:`train_commanded`, whose fixed commands are single-skill
  experts (:class:`SkillExpert`) for neural probabilistic motor primitives.

:func:`load_expert` loads any of them from disk.
"""

from latentprior.experts.base import Expert, ExpertError, default_expert, evaluate_expert, load_expert
from latentprior.experts.commanded import (
    COMMANDED_TASKS,
    Command,
    CommandedExpert,
    CommandedTask,
    SkillExpert,
    collect_skills,
    evaluate_skills,
    train_commanded,
)
from latentprior.experts.mlp import MLPExpert
from latentprior.experts.oscillator import OscillatorExpert, fit_oscillator
from latentprior.experts.sb3_zoo import Sb3ImportError, load_sb3_zoo
from latentprior.experts.trained import PolicyExpert

__all__ = [
    "COMMANDED_TASKS",
    "Command",
    "CommandedExpert",
    "CommandedTask",
    "SkillExpert",
    "collect_skills",
    "evaluate_skills",
    "train_commanded",
    "Expert",
    "ExpertError",
    "MLPExpert",
    "OscillatorExpert",
    "PolicyExpert",
    "Sb3ImportError",
    "default_expert",
    "evaluate_expert",
    "fit_oscillator",
    "load_expert",
    "load_sb3_zoo",
]
