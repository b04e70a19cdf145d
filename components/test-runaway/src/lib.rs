//! Not part of the app: the tests run it to check that the host stops a
//! component that never returns (`/spin`) or grows its memory without
//! bound (`/grow`), and keeps serving afterwards (`/ok`).

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    match req.path() {
        "/spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/grow" => {
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                blocks.push(vec![1; 16 << 20]);
                std::hint::black_box(&blocks);
            }
        }
        _ => Response::new(200, "ok"),
    }
}
