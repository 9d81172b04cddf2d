"""Container images built without a Docker daemon: reproducible layers (`layers`) and OCI layouts (`layout`)."""
