# The Python runtime: `python -m lf_runtime` with the function's folder in /function (LF_FUNCTION_DIR).
# Build from the repository root: docker build -f deploy/images/python.Dockerfile --build-arg FUNCTION=examples/hello .
# Runs read-only (`readOnlyRootFilesystem: true`): nothing is written at run time; requirements go in at build.
FROM python:3.11-slim AS build
ARG FUNCTION
RUN pip install --no-cache-dir uv
WORKDIR /src
COPY . .
RUN uv venv /venv && VIRTUAL_ENV=/venv uv pip install --no-cache ./native ./core "./runtimes/python[tracing]" \
 && if [ -f "$FUNCTION/requirements.txt" ]; then VIRTUAL_ENV=/venv uv pip install --no-cache -r "$FUNCTION/requirements.txt"; fi \
 && cp -r "$FUNCTION" /function

FROM python:3.11-slim
COPY --from=build /venv /venv
COPY --from=build /function /function
USER 65532:65532
ENV PATH=/venv/bin:$PATH LF_FUNCTION_DIR=/function PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /function
# The command lf dev runs for a Python replica (lf_controlplane.dev.builds.runtime_argv).
ENTRYPOINT ["python", "-m", "lf_runtime"]
