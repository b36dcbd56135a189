"""Tasks and wrappers. Importing this package registers the ``latentprior/`` task ids (AntMaze,
Bipedal Skills); their optional packages are imported only when such an environment is made."""

from latentprior.envs import antmaze, bipedal_skills  # noqa: F401  (registers the latentprior/ ids)
