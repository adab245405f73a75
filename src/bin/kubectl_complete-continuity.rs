//! `kubectl_complete-continuity`: the completion executable kubectl (1.26+) runs for
//! `kubectl continuity <TAB>`, as `kubectl_complete-continuity __complete <words...>`.

use continuity_operator::plugin;

#[tokio::main]
async fn main() {
    // `__complete` or `__completeNoDesc`, then the words typed.
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|w| w.starts_with("__complete")) {
        args.next();
    }
    let words: Vec<String> = args.collect();
    print!("{}", plugin::completions(&words).await);
}
