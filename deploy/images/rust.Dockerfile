# The Rust runtime: the function's crate compiled with runtimes/rust (and native/, the envelope codec).
# Build from the repository root: docker build -f deploy/images/rust.Dockerfile --build-arg FUNCTION=examples/hello-rust .
# The wrapper crate is the one `lf dev` generates (lf_controlplane.dev.builds.rust_wrapper).
FROM rust:1.95 AS build
ARG FUNCTION
COPY native /src/native
COPY runtimes/rust /src/runtimes/rust
COPY Cargo.lock /src/Cargo.lock
COPY ${FUNCTION} /src/function
WORKDIR /src/build
RUN PACKAGE=$(awk -F'"' '/^name *=/ {print $2; exit}' /src/function/Cargo.toml) \
 && printf '[package]\nname = "lf-function"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n[[bin]]\nname = "lf-function"\npath = "main.rs"\n\n[dependencies]\nlf-runtime = { path = "/src/runtimes/rust" }\nhandler = { path = "/src/function", package = "%s" }\n\n[patch.crates-io]\nlf-runtime = { path = "/src/runtimes/rust" }\n\n[workspace]\n\n[profile.release]\npanic = "unwind"\n' "$PACKAGE" > Cargo.toml \
 && printf 'fn main() {\n    lf_runtime::main(handler::handle)\n}\n' > main.rs \
 && cp /src/Cargo.lock . && cargo build --release && cp target/release/lf-function /function

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /function /function
USER 65532:65532
ENTRYPOINT ["/function"]
