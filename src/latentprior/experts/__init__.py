"""Where demonstrations come from: experts behind one interface, :class:`Expert`.

- :class:`MLPExpert` (``mlp.py``): a SAC/TQC-style deterministic actor, e.g. imported from a
  stable-baselines3 zoo ``.zip`` with :func:`load_sb3_zoo` (``sb3_zoo.py``, no SB3 needed);
- :class:`OscillatorExpert` (``oscillator.py``): an open-loop sine-wave gait fitted with CMA-ES by
  :func:`fit_oscillator`, cheap demonstrations in minutes; :func:`default_expert` ships one;
- :class:`PolicyExpert` (``trained.py``): a policy trained with the project's own PPO/SAC.

:func:`load_expert` loads any of them from disk.
"""

from latentprior.experts.base import Expert, ExpertError, default_expert, evaluate_expert, load_expert
from latentprior.experts.mlp import MLPExpert
from latentprior.experts.oscillator import OscillatorExpert, fit_oscillator
from latentprior.experts.sb3_zoo import Sb3ImportError, load_sb3_zoo
from latentprior.experts.trained import PolicyExpert

__all__ = [
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
