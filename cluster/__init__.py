"""The composition root: settings from the environment, embedded services, CLI, deployment."""
