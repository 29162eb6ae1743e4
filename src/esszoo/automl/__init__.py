"""Automating the choice and design of models: search over the zoo (Optuna, random search).

`esszoo.automl.search` runs a study over a recipe's ``search.space``; architecture search
by NAS with reinforcement learning, ENAS and DARTS is to come.
"""

from esszoo.automl.search import METHODS, search

__all__ = ["METHODS", "search"]
