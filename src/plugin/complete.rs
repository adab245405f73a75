//! The kubectl plugin completion protocol (kubectl 1.26+): for `kubectl continuity <TAB>`,
//! kubectl runs the executable `kubectl_complete-continuity` with `__complete`, the words
//! typed after the plugin's name, and the word being completed (empty at a fresh word), as
//! Cobra programs are asked. The answer is one candidate per line, then `:<directive>`
//! (Cobra's bit set; 4 = do not fall back to file names). Which word is being completed is
//! decided here, purely; the candidates are read by [`super`].

/// Cobra's `ShellCompDirectiveNoFileComp`.
pub const NO_FILE_COMPLETION: u8 = 4;

/// The plugin's commands, as completion offers them.
pub const COMMANDS: [&str; 4] = ["users", "status", "messages", "confirm-scope-change"];
/// Flags followed by a value of their own.
const VALUE_FLAGS: [&str; 8] = [
    "-n",
    "--namespace",
    "--state",
    "--recipient",
    "--limit",
    "-o",
    "--output",
    "--password-secret",
];

/// The verbs of `users`.
pub const USER_VERBS: [&str; 3] = ["add", "remove", "list"];

/// What the word being completed is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// One of these words.
    Words(&'static [&'static str]),
    /// A ContinuityDomain's name.
    Domain,
    /// An address of `domain`'s directory that it does not cover yet (`users add`).
    Uncovered { domain: String },
    /// The address of one of `domain`'s ContinuityUsers (`users remove`).
    UserAddress { domain: String },
    /// Nothing to offer (a flag, or past the last argument).
    Nothing,
}

/// A completion request, read from the words after `__complete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `-n`/`--namespace`, if typed.
    pub namespace: Option<String>,
    pub slot: Slot,
    /// The word as typed so far.
    pub typed: String,
}

/// Reads the words after `__complete`: the last is the one being completed.
pub fn parse(words: &[String]) -> Request {
    let (typed, before) = match words.split_last() {
        Some((typed, before)) => (typed.clone(), before),
        None => (String::new(), &[][..]),
    };
    let mut namespace = None;
    let mut positional: Vec<&str> = Vec::new();
    let mut iter = before.iter().map(String::as_str);
    while let Some(word) = iter.next() {
        if word == "-n" || word == "--namespace" {
            namespace = iter.next().map(str::to_owned);
        } else if let Some(value) = word.strip_prefix("--namespace=") {
            namespace = Some(value.to_owned());
        } else if VALUE_FLAGS.contains(&word) {
            iter.next();
        } else if let Some(value) = word
            .strip_prefix("-n")
            .filter(|v| !v.is_empty() && !word.starts_with("--"))
        {
            namespace = Some(value.to_owned());
        } else if !word.starts_with('-') {
            positional.push(word);
        }
    }
    let expecting_value = before.last().is_some_and(|w| VALUE_FLAGS.contains(&w.as_str()));
    let slot = if typed.starts_with('-') || expecting_value {
        Slot::Nothing
    } else {
        slot_after(&positional)
    };
    Request { namespace, slot, typed }
}

fn slot_after(positional: &[&str]) -> Slot {
    match positional {
        [] => Slot::Words(&COMMANDS),
        ["users"] => Slot::Words(&USER_VERBS),
        ["users", "add" | "remove" | "list"] | ["status" | "messages" | "confirm-scope-change"] => Slot::Domain,
        ["users", "add", domain, ..] => Slot::Uncovered {
            domain: (*domain).to_owned(),
        },
        ["users", "remove", domain, ..] => Slot::UserAddress {
            domain: (*domain).to_owned(),
        },
        _ => Slot::Nothing,
    }
}

/// The answer kubectl reads: the candidates, then the directive.
pub fn render(candidates: &[String]) -> String {
    let mut out: String = candidates.iter().map(|c| format!("{c}\n")).collect();
    out.push_str(&format!(":{NO_FILE_COMPLETION}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Request {
        // A trailing space means a fresh, empty word.
        let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if line.ends_with(' ') || line.is_empty() {
            words.push(String::new());
        }
        parse(&words)
    }

    #[test]
    fn each_position_completes_what_belongs_there() {
        assert_eq!(request("").slot, Slot::Words(&COMMANDS));
        assert_eq!(request("us").slot, Slot::Words(&COMMANDS));
        assert_eq!(request("users ").slot, Slot::Words(&USER_VERBS));
        assert_eq!(request("users add ").slot, Slot::Domain);
        assert_eq!(request("status c").slot, Slot::Domain);
        let add = request("users add corp ali");
        assert_eq!(add.slot, Slot::Uncovered { domain: "corp".into() });
        assert_eq!(add.typed, "ali");
        assert_eq!(
            request("users add corp alice@corp.example bo").slot,
            Slot::Uncovered { domain: "corp".into() },
            "users add takes several addresses"
        );
        assert_eq!(
            request("users remove corp ").slot,
            Slot::UserAddress { domain: "corp".into() }
        );
        assert_eq!(request("status corp ").slot, Slot::Nothing);
    }

    #[test]
    fn the_namespace_flag_is_read_wherever_it_is() {
        let r = request("-n tenant-a users add corp ali");
        assert_eq!(r.namespace.as_deref(), Some("tenant-a"));
        assert_eq!(r.slot, Slot::Uncovered { domain: "corp".into() });
        assert_eq!(
            request("users add --namespace=t corp ali").namespace.as_deref(),
            Some("t")
        );
        assert_eq!(request("users add -nt corp ali").namespace.as_deref(), Some("t"));
        assert_eq!(
            request("users add corp -n ").slot,
            Slot::Nothing,
            "a namespace is expected"
        );
        assert_eq!(request("users add corp --pass").slot, Slot::Nothing, "a flag is typed");
    }

    #[test]
    fn the_answer_ends_with_the_directive() {
        assert_eq!(render(&["a@x".into(), "b@x".into()]), "a@x\nb@x\n:4\n");
        assert_eq!(render(&[]), ":4\n");
    }
}
