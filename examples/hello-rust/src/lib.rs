//! Greets: GET /function/hello-rust?name=Ada. An `async fn` works too.

use lf_runtime::{Request, Response, Result};

pub async fn handle(req: Request) -> Result<Response> {
    let name = req
        .query_pairs()
        .into_iter()
        .find(|(k, _)| k == "name")
        .map_or_else(|| "world".to_owned(), |(_, v)| v);
    Ok(Response::text(format!("Hello, {name}, from Rust!\n")))
}
