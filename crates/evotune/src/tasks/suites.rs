//! Built-in prior suites, compiled into the binary from the repository's `data/` folder so the tool
//! works from any directory. How each was made, and the default model's base scores:
//! `data/PROVENANCE.md` (generator: `scripts/make_suites.py`).

/// What a suite's lines hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuiteKind {
    /// `{"question", "choices", "answer"}` lines (see [`crate::tasks::multiple_choice`]).
    MultipleChoice,
    /// `{"prompt"}` lines: prompts of the KL probe.
    Prompts,
}

#[derive(Clone, Copy, Debug)]
pub struct Suite {
    pub name: &'static str,
    pub kind: SuiteKind,
    pub about: &'static str,
    pub text: &'static str,
}

pub const SUITES: &[Suite] = &[
    Suite {
        name: "capitals",
        kind: SuiteKind::MultipleChoice,
        about: "capital city of a country, 4 choices",
        text: include_str!("../../../../data/capitals.jsonl"),
    },
    Suite {
        name: "opposites",
        kind: SuiteKind::MultipleChoice,
        about: "opposite of an English word, 4 choices",
        text: include_str!("../../../../data/opposites.jsonl"),
    },
    Suite {
        name: "plurals",
        kind: SuiteKind::MultipleChoice,
        about: "plural of an English noun (regular and irregular), 4 choices",
        text: include_str!("../../../../data/plurals.jsonl"),
    },
    Suite {
        name: "science",
        kind: SuiteKind::MultipleChoice,
        about: "everyday science and nature facts, 4 choices",
        text: include_str!("../../../../data/science.jsonl"),
    },
    Suite {
        name: "kl_prompts",
        kind: SuiteKind::Prompts,
        about: "everyday chat prompts for the KL(base‖current) probe",
        text: include_str!("../../../../data/kl_prompts.jsonl"),
    },
];

/// The built-in suite called `name`.
pub fn find(name: &str) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.name == name)
}

/// Names of the multiple-choice suites, for messages and `evotune eval --list`.
pub fn multiple_choice_names() -> Vec<&'static str> {
    SUITES.iter().filter(|s| s.kind == SuiteKind::MultipleChoice).map(|s| s.name).collect()
}
