"""The ingestor's metrics, logs and the function-output log stream."""
