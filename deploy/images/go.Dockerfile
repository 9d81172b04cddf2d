# The Go runtime: the function's package compiled with runtimes/go into one static binary.
# Build from the repository root: docker build -f deploy/images/go.Dockerfile --build-arg FUNCTION=examples/hello-go .
# The wrapper module is the one `lf dev` generates (lf_controlplane.dev.builds.go_wrapper).
FROM golang:1.26 AS build
ARG FUNCTION
COPY runtimes/go /src/runtime
COPY ${FUNCTION} /src/function
WORKDIR /src/build
RUN MODULE=$(awk '/^module/ {print $2; exit}' /src/function/go.mod) \
 && P=v0.0.0-00010101000000-000000000000 \
 && printf 'module lf.local/build\n\ngo 1.26\n\nrequire (\n\tlitefunctions.io/runtime %s\n\t%s %s\n)\n\nreplace litefunctions.io/runtime => /src/runtime\n\nreplace %s => /src/function\n' "$P" "$MODULE" "$P" "$MODULE" > go.mod \
 && printf 'package main\n\nimport (\n\thandler "%s"\n\n\t"litefunctions.io/runtime/serving"\n)\n\nfunc main() { serving.Main(handler.Handle) }\n' "$MODULE" > main.go \
 && cat /src/runtime/go.sum /src/function/go.sum 2>/dev/null | sort -u > go.sum \
 && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o /function .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /function /function
# Read-only-root friendly: the binary writes nothing; secrets come mounted at LF_SECRETS_DIR.
USER 65532:65532
ENTRYPOINT ["/function"]
