"""Training configs as code: each module has get_config(arg) -> ConfigDict."""
