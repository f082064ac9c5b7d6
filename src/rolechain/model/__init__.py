"""Chain files: pydantic models, the YAML loader with locations, reference checks."""
