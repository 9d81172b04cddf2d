// Package hello greets: GET /function/hello-go?name=Ada.
package hello

import (
	"context"

	"litefunctions.io/runtime/lf"
)

// Handle answers one call; ctx ends at the call's deadline.
func Handle(_ context.Context, req *lf.Request) (*lf.Response, error) {
	name := req.Query().Get("name")
	if name == "" {
		name = "world"
	}
	return lf.Text(200, "Hello, "+name+", from Go!\n"), nil
}
