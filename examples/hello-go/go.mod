module hello

go 1.26

require litefunctions.io/runtime v0.1.0

// For editors and `go vet` here; lf dev and the image build point the wrapper module at the runtime.
replace litefunctions.io/runtime => ../../runtimes/go
