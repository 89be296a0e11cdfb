//! Tasks without a model: reward functions on hand-made completions, generators, JSONL errors, the
//! external-command protocol, the registry and the built-in suites.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use evotune::tasks::command::{CommandRecord, CommandReward};
use evotune::tasks::countdown::{self, Instance};
use evotune::tasks::multiple_choice::{self, parse_choice};
use evotune::tasks::reward_kind::RewardKind;
use evotune::tasks::{arith, conciseness, prior_task, suites, target_task, Item, PriorTask, TaskOptions, TaskScore};
use evotune::tokenizer::Prompt;
use evotune::Error;

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-6
}

// === countdown ===

#[test]
fn countdown_reward_right_answer_full_format() {
    let r = countdown::reward("2 times 3 is 6, times 4 is 24.</think>\n<answer>2 * 3 * 4</answer>", &[2, 3, 4], 24);
    assert!(r.correct);
    assert!(close(r.value, 1.1), "{r:?}");
    // One trailing newline is allowed by the full-format rule (Python's `$`).
    let r = countdown::reward("ok</think>\n<answer>(4 * 3) * 2</answer>\n", &[2, 3, 4], 24);
    assert!(close(r.value, 1.1), "{r:?}");
    // Exact fractions: 6 / (1 - 3/4) = 24.
    let r = countdown::reward("x</think>\n<answer>6 / (1 - 3 / 4)</answer>", &[1, 3, 4, 6], 24);
    assert!(r.correct && close(r.value, 1.1), "{r:?}");
}

#[test]
fn countdown_reward_partial_format_and_wrong_answers() {
    // Space instead of newline between the blocks: think pair (0.1) + answer pair (0.5) = 0.6.
    let r = countdown::reward("hm</think> <answer>2*3*4</answer>", &[2, 3, 4], 24);
    assert!(r.correct && close(r.value, 0.06 + 1.0), "{r:?}");
    // Right format, wrong value.
    let r = countdown::reward("</think>\n<answer>2 + 3 + 4</answer>", &[2, 3, 4], 24);
    assert!(!r.correct && close(r.value, 0.1), "{r:?}");
    // Right value, numbers misused (missing one, extra one, bare target).
    for bad in [
        "<answer>6 * 4</answer>",
        "<answer>2 * 3 * 4 * 1</answer>",
        "<answer>24</answer>",
        "<answer>2 * 3 * 4 = 24</answer>",
    ] {
        let r = countdown::reward(bad, &[2, 3, 4], 24);
        assert!(!r.correct, "{bad}: {r:?}");
    }
    // Empty and junk.
    let r = countdown::reward("", &[2, 3, 4], 24);
    assert_eq!(r.value, 0.0);
    assert!(!r.correct);
    assert_eq!(countdown::reward("<answer>", &[2, 3, 4], 24).value, 0.0);
    assert!(!countdown::reward("<answer>two times three times four</answer>", &[2, 3, 4], 24).correct);
}

#[test]
fn countdown_reward_adversarial() {
    // The right answer hidden in <think>, a wrong one in the last <answer>: the last one counts.
    let r = countdown::reward("<answer>2*3*4</answer> hmm</think>\n<answer>2+3+4</answer>", &[2, 3, 4], 24);
    assert!(!r.correct, "{r:?}");
    // Several answers: a wrong one first, the right one last.
    let r = countdown::reward("</think>\n<answer>2+3+4</answer><answer>2*3*4</answer>", &[2, 3, 4], 24);
    assert!(r.correct, "{r:?}");
    // Huge numbers and huge products: no panic, no reward.
    let huge = format!("<answer>{} * 2</answer>", "9".repeat(40));
    assert!(!countdown::reward(&huge, &[2, 3, 4], 24).correct);
    let big =
        countdown::reward("<answer>999999999 * 999999999 * 999999999</answer>", &[999999999, 999999999, 999999999], 1);
    assert!(!big.correct);
    // Division by zero with the right multiset of numbers.
    let r = countdown::reward("<answer>6 / (4 - 4)</answer>", &[4, 4, 6], 2);
    assert!(!r.correct && r.value < 0.1, "{r:?}");
    // Python-only operators are not + − × ÷.
    assert!(!countdown::reward("<answer>2 ** 3 + 4 * 4</answer>", &[2, 3, 4, 4], 24).correct);
    assert!(!countdown::reward("<answer>(4 // 2) * 3 * 4</answer>", &[2, 3, 4, 4], 24).correct);
    // Deep nesting does not overflow the stack.
    let deep = format!("<answer>{}2{} * 3 * 4</answer>", "(".repeat(10_000), ")".repeat(10_000));
    assert!(!countdown::reward(&deep, &[2, 3, 4], 24).correct);
}

#[test]
fn countdown_instances_are_solvable_and_distinct() {
    let opts = TaskOptions { train_size: 60, test_size: 40, ..TaskOptions::default() };
    let task = target_task("countdown", &opts).unwrap();
    assert_eq!(task.train().len(), 60);
    assert_eq!(task.test().len(), 40);
    let mut seen = std::collections::HashSet::new();
    for item in task.train().iter().chain(task.test()) {
        let inst: Instance = serde_json::from_str(&item.answer).unwrap();
        assert!((3..=4).contains(&inst.numbers.len()));
        assert!((1..=100).contains(&inst.target));
        let expr = countdown::solve(&inst.numbers, inst.target).expect("generated instance is solvable");
        let r = countdown::reward(&format!("…</think>\n<answer>{expr}</answer>"), &inst.numbers, inst.target);
        assert!(r.correct && close(r.value, 1.1), "{expr} for {inst:?}");
        assert!(seen.insert(item.answer.clone()), "duplicate instance {}", item.answer);
        let Prompt::Chat { system, user } = &item.prompt else { panic!("chat prompt") };
        assert_eq!(system.as_deref(), Some(countdown::SYSTEM));
        assert!(user.contains(&format!("equals {}", inst.target)));
    }
    assert_eq!(task.response_prefix(), "Let me solve this step by step.\n<think>");
    // Same seed, same tasks; another seed, other tasks.
    let again = target_task("countdown", &opts).unwrap();
    assert_eq!(again.train(), task.train());
    let other = target_task("countdown", &TaskOptions { seed: 1, ..opts }).unwrap();
    assert_ne!(other.train(), task.train());
}

// === arith and conciseness ===

#[test]
fn arith_rewards() {
    let cases = [
        ("85", 1.1, true),
        (" 85.\n", 1.1, true),
        ("47 + 38 = 85", 1.0, true),
        ("The answer is 85.", 1.0, true),
        ("85 or maybe 86", 0.0, false),
        ("84", 0.1, false),
        ("", 0.0, false),
        ("eighty-five", 0.0, false),
    ];
    for (c, v, ok) in cases {
        let r = arith::reward(c, 85.0);
        assert!(close(r.value, v) && r.correct == ok, "{c:?}: {r:?}");
    }
    assert!(arith::reward("-22", -22.0).correct);
    assert!(arith::reward("1,234", 1234.0).correct);
}

#[test]
fn arith_task_generation() {
    let opts = TaskOptions {
        arith_ops: vec![evotune::tasks::ArithOp::Sub, evotune::tasks::ArithOp::Mul],
        arith_min: 2,
        arith_max: 9,
        train_size: 20,
        test_size: 10,
        ..TaskOptions::default()
    };
    let task = target_task("arith", &opts).unwrap();
    for item in task.train().iter().chain(task.test()) {
        let Prompt::Chat { user, .. } = &item.prompt else { panic!() };
        let nums: Vec<i64> = user.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
        let want = if user.contains(" - ") { nums[0] - nums[1] } else { nums[0] * nums[1] };
        assert_eq!(item.answer, want.to_string(), "{user}");
        assert!(user.ends_with("Answer with only the number."));
    }
    let test_q: Vec<_> = task.test().iter().map(|i| i.prompt.clone()).collect();
    assert!(task.train().iter().all(|i| !test_q.contains(&i.prompt)), "train and test overlap");
    // Too many questions for the range is an error, not a hang.
    let err =
        target_task("arith", &TaskOptions { arith_min: 1, arith_max: 2, ..TaskOptions::default() }).err().unwrap();
    assert!(err.to_string().contains("distinct"), "{err}");
}

#[test]
fn conciseness_rewards() {
    let r = conciseness::reward(" 8 ", "8");
    assert_eq!(r.value, 0.0);
    assert!(r.correct);
    let r = conciseness::reward("The answer is 8", "8");
    assert_eq!(r.value, -14.0);
    assert!(!r.correct);
    let r = conciseness::reward("No.", "No");
    assert!(close(r.value, -0.5) && r.correct, "{r:?}");
    let task = target_task("conciseness", &TaskOptions::default()).unwrap();
    assert_eq!(task.train().len(), 2);
    assert_eq!(task.max_new_tokens(), 100);
}

// === reward kinds ===

fn item(answer: &str) -> Item {
    Item { prompt: Prompt::Chat { system: None, user: "q".into() }, answer: answer.into() }
}

fn score(kind: &RewardKind, answer: &str, completion: &str) -> (f32, bool) {
    let it = item(answer);
    let r = kind.score("t", &[&it], &[completion.to_string()]).unwrap()[0];
    (r.value, r.correct)
}

#[test]
fn reward_kinds() {
    assert_eq!(score(&RewardKind::Exact, "Paris", " Paris\n"), (1.0, true));
    assert_eq!(score(&RewardKind::Exact, "Paris", "Paris."), (0.0, false));
    assert_eq!(score(&RewardKind::Contains, "Paris", "It is paris, of course"), (1.0, true));
    let re = RewardKind::Regex { pattern: r"\b{answer}\b".into() };
    assert_eq!(score(&re, "3.5", "about 3.5 kg"), (1.0, true));
    assert_eq!(score(&re, "3.5", "about 345 kg"), (0.0, false));
    assert_eq!(score(&RewardKind::Regex { pattern: String::new() }, "^ab+c$", "abbbc"), (1.0, true));
    let num = RewardKind::Numeric { tolerance: 0.01 };
    let (v, ok) = score(&num, "3.14", "3.141");
    assert!(ok && close(v, 1.1));
    let (v, ok) = score(&num, "3.14", "pi is about 3.14159");
    assert!(ok && close(v, 1.0));
    assert!(!score(&num, "3.14", "3").1);
    let hash = RewardKind::Hash { tolerance: 1e-6 };
    let (v, ok) = score(&hash, "72", "She sold 48 + 24 = 72 clips.\n#### 72");
    assert!(ok && close(v, 1.1), "{v}");
    let (v, ok) = score(&hash, "1000", "#### 1,000 dollars\nThat is all.");
    assert!(ok && close(v, 1.0), "{v}");
    assert!(score(&hash, "18", "<think>#### 18</think> The answer is \\boxed{17}").0 == 0.0);
    assert!(score(&hash, "18", "so \\boxed{18}").1);
    assert!(score(&hash, "5", "first 5 then 7").1, "falls back to the first number");
    assert!(score(&hash, "5", "").0 == 0.0);
    // A non-numeric reference answer is a clear error.
    let it = item("many");
    let err = num.score("t", &[&it], &["3".into()]).unwrap_err();
    assert!(err.to_string().contains("numeric answer"), "{err}");
    // An invalid regex is a clear error.
    let err = RewardKind::Regex { pattern: "(".into() }.score("t", &[&it], &["x".into()]).unwrap_err();
    assert!(err.to_string().contains("regex"), "{err}");
}

// === JSONL files ===

fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

fn bad_line(err: Error) -> (String, usize, &'static str, String) {
    match err {
        Error::BadTaskLine { path, line, field, problem } => (path.display().to_string(), line, field, problem),
        other => panic!("expected BadTaskLine, got {other}"),
    }
}

#[test]
fn jsonl_task_reads_splits_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("{{\"prompt\": \"What is {i} + 1?\", \"answer\": {}}}\n", i + 1));
        if i == 10 {
            text.push('\n');
        }
    }
    let p = write_file(dir.path(), "plus.jsonl", &text);
    let opts = TaskOptions { reward: "numeric".into(), test_fraction: 0.3, ..TaskOptions::default() };
    let task = target_task(p.to_str().unwrap(), &opts).unwrap();
    assert_eq!(task.name(), "plus");
    assert_eq!(task.train().len() + task.test().len(), 100);
    assert!((15..=45).contains(&task.test().len()), "{}", task.test().len());
    let it = &task.test()[0];
    let right = evotune::tasks::numbers::parse_number(&it.answer).unwrap();
    let r = task.rewards(&[it], &[format!("{right}")]).unwrap();
    assert!(r[0].correct && close(r[0].value, 1.1));
    // Seeded: same seed same split, other seed other split.
    let again = target_task(p.to_str().unwrap(), &opts).unwrap();
    assert_eq!(again.test(), task.test());
    let other = target_task(p.to_str().unwrap(), &TaskOptions { seed: 9, ..opts.clone() }).unwrap();
    assert_ne!(other.test(), task.test());
}

#[test]
fn jsonl_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let opts = TaskOptions::default();
    let cases: [(&str, usize, &str); 5] = [
        ("{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": \"c\"}\n", 2, "answer"),
        ("{\"prompt\": \"a\", \"answer\": \"b\"}\n\n{\"prompt\": \"a\", \"answer\": \"b\"\n", 3, "(line)"),
        ("[1, 2]\n", 1, "(line)"),
        ("{\"prompt\": 5, \"answer\": \"b\"}\n", 1, "prompt"),
        ("{\"prompt\": \"a\", \"answer\": \"b\", \"system\": [\"x\"]}\n", 1, "system"),
    ];
    for (i, (text, line, field)) in cases.iter().enumerate() {
        let p = write_file(dir.path(), &format!("bad{i}.jsonl"), text);
        let err = target_task(p.to_str().unwrap(), &opts).err().expect("malformed file is an error");
        let msg = err.to_string();
        let (path, l, f, _) = bad_line(err);
        assert!(path.ends_with(&format!("bad{i}.jsonl")), "{msg}");
        assert_eq!((l, f), (*line, *field), "{msg}");
        assert!(msg.contains(&format!("bad{i}.jsonl:{line}")), "{msg}");
    }
    // Multiple-choice files: answer out of range, bad letter, too few choices.
    let mc_cases: [(&str, usize, &str); 3] = [
        ("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}\n", 2, "answer"),
        ("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": \"C\"}\n", 1, "answer"),
        ("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n", 1, "choices"),
    ];
    for (i, (text, line, field)) in mc_cases.iter().enumerate() {
        let p = write_file(dir.path(), &format!("mc{i}.jsonl"), text);
        let err = prior_task(p.to_str().unwrap(), &opts).err().expect("malformed file is an error");
        let (path, l, f, problem) = bad_line(err);
        assert!(path.ends_with(&format!("mc{i}.jsonl")));
        assert_eq!((l, f), (*line, *field), "{problem}");
    }
    // A letter answer is accepted.
    let p = write_file(
        dir.path(),
        "ok.jsonl",
        "{\"question\": \"q\", \"choices\": [\"a\", \"b\", \"c\"], \"answer\": \"C\"}\n",
    );
    match prior_task(p.to_str().unwrap(), &opts).unwrap() {
        PriorTask::MultipleChoice { items, .. } => assert_eq!(items[0].answer, 2),
        _ => panic!("expected multiple choice"),
    }
    // A missing file names the path.
    let err = target_task("/nonexistent/x.jsonl", &opts).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/x.jsonl"), "{err}");
}

// === external command ===

fn records() -> Vec<(String, String, String)> {
    vec![
        ("p1".into(), "hello".into(), "a".into()),
        ("p2".into(), "hi".into(), "b".into()),
        ("p3".into(), "".into(), "c".into()),
    ]
}

fn run(cmd: &str, timeout: f64) -> evotune::Result<Vec<f32>> {
    let recs = records();
    let r: Vec<CommandRecord<'_>> =
        recs.iter().map(|(p, c, a)| CommandRecord { prompt: p, completion: c, answer: a }).collect();
    CommandReward::new(cmd, timeout)?.run(&r)
}

fn command_problem(r: evotune::Result<Vec<f32>>) -> String {
    match r {
        Err(Error::RewardCommand { problem, .. }) => problem,
        Err(other) => panic!("expected RewardCommand, got {other}"),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn command_reward_works() {
    let py = "python3 -c 'import sys, json\nfor l in sys.stdin:\n    r = json.loads(l)\n    print(len(r[\"completion\"]) + (0.5 if r[\"answer\"] == \"b\" else 0))'";
    assert_eq!(run(py, 30.0).unwrap(), vec![5.0, 2.5, 0.0]);
    // Through the JSONL task and the reward kind.
    let dir = tempfile::tempdir().unwrap();
    let p = write_file(
        dir.path(),
        "cmd.jsonl",
        "{\"prompt\": \"x\", \"answer\": \"yes\"}\n{\"prompt\": \"y\", \"answer\": \"no\"}\n",
    );
    let opts = TaskOptions {
        reward: "command".into(),
        command: "while read -r line; do case \"$line\" in *'\"completion\":\"yes\"'*) echo 1;; *) echo 0;; esac; done"
            .into(),
        test_fraction: 0.0,
        ..TaskOptions::default()
    };
    let task = target_task(p.to_str().unwrap(), &opts).unwrap();
    let items: Vec<&Item> = task.train().iter().collect();
    let r = task.rewards(&items, &["yes".into(), "nope".into()]).unwrap();
    assert_eq!((r[0].value, r[0].correct, r[1].value, r[1].correct), (1.0, true, 0.0, false));
}

#[test]
fn command_reward_times_out_and_kills() {
    let t = Instant::now();
    let p = command_problem(run("sleep 20; echo 1; echo 1; echo 1", 0.5));
    assert!(p.contains("did not finish"), "{p}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    // A program that exits but leaves a background child holding stdout.
    let t = Instant::now();
    let p = command_problem(run("(sleep 20 &) ; echo 1", 1.0));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}: {p}", t.elapsed());
}

#[test]
fn command_reward_fails_cleanly() {
    let p = command_problem(run("echo oops >&2; exit 3", 10.0));
    assert!(p.contains("status 3") && p.contains("oops"), "{p}");
    let p = command_problem(run("kill -SEGV $$", 10.0));
    assert!(p.contains("signal"), "{p}");
    let p = command_problem(run("echo 1; echo 2", 10.0));
    assert!(p.contains("2 reward lines for 3"), "{p}");
    let p = command_problem(run("echo 1; echo banana; echo 3", 10.0));
    assert!(p.contains("line 2") && p.contains("banana"), "{p}");
    let p = command_problem(run("echo 1; echo 2; echo inf", 10.0));
    assert!(p.contains("line 3") && p.contains("not finite"), "{p}");
    let p = command_problem(run("echo NaN; echo 2; echo 3", 10.0));
    assert!(p.contains("line 1"), "{p}");
    let p = command_problem(run("cat > /dev/null; echo 1; echo 2; echo 3; exit 1", 10.0));
    assert!(p.contains("status 1"), "{p}");
    assert!(CommandReward::new("", 1.0).is_err());
    assert!(CommandReward::new("true", 0.0).is_err());
}

// === registry and built-in suites ===

#[test]
fn registry_names() {
    let opts = TaskOptions::default();
    assert!(target_task("arith", &opts).is_ok());
    let err = target_task("nonsense", &opts).err().unwrap();
    assert!(err.to_string().contains("countdown, arith, conciseness"), "{err}");
    assert!(matches!(prior_task("capitals", &opts).unwrap(), PriorTask::MultipleChoice { .. }));
    assert!(matches!(prior_task("capitals:loglik", &opts).unwrap(), PriorTask::MultipleChoice { .. }));
    assert!(matches!(prior_task("science:gen", &opts).unwrap(), PriorTask::Generation(_)));
    assert!(matches!(prior_task("arith", &opts).unwrap(), PriorTask::Generation(_)));
    match prior_task("kl", &opts).unwrap() {
        PriorTask::Kl(p) => assert!(!p.is_prepared()),
        _ => panic!("expected the KL probe"),
    }
    assert!(matches!(prior_task("kl:capitals", &opts).unwrap(), PriorTask::Kl(_)));
    assert!(prior_task("arith:gen", &opts).is_err());
    assert!(prior_task("kl_prompts", &opts).is_err());
    assert!(prior_task("nope", &opts).is_err());
}

#[test]
fn builtin_suites_are_well_formed() {
    let opts = TaskOptions::default();
    for name in suites::multiple_choice_names() {
        let PriorTask::MultipleChoice { items, .. } = prior_task(name, &opts).unwrap() else { panic!("{name}") };
        assert!((100..=500).contains(&items.len()), "{name}: {} items", items.len());
        for it in &items {
            assert!(it.answer < it.choices.len());
            let mut c = it.choices.clone();
            c.sort();
            c.dedup();
            assert_eq!(c.len(), it.choices.len(), "{name}: duplicate choices in {:?}", it.question);
        }
        // The right answer is not always in the same position.
        let first = items.iter().filter(|i| i.answer == 0).count();
        assert!(first < items.len() * 3 / 4, "{name}: answer 0 in {first} of {}", items.len());
    }
    let kl = evotune::tasks::registry::probe_prompts("kl_prompts").unwrap();
    assert_eq!(kl.len(), 32);
}

#[test]
fn mc_generation_scoring() {
    let opts = TaskOptions::default();
    let PriorTask::Generation(task) = prior_task("capitals:gen", &opts).unwrap() else { panic!() };
    let it = &task.test()[0];
    let Prompt::Chat { user, .. } = &it.prompt else { panic!() };
    assert!(user.contains("\nA. ") && user.contains("\nD. ") && user.contains("Answer with only the letter"));
    let mc: multiple_choice::McItem = serde_json::from_str(&it.answer).unwrap();
    let letter = (b'A' + mc.answer as u8) as char;
    let wrong = (b'A' + ((mc.answer + 1) % 4) as u8) as char;
    let r =
        task.rewards(&[it, it, it], &[format!("{letter}"), format!("The answer is ({wrong})."), "".into()]).unwrap();
    assert_eq!(r.iter().map(|r| r.correct).collect::<Vec<_>>(), vec![true, false, false]);
    assert_eq!(parse_choice("answer is b", &mc.choices), Some(1));
}

#[test]
fn options_and_scores_serialise() {
    let opts: TaskOptions = toml::from_str("").unwrap();
    assert_eq!(opts, TaskOptions::default());
    let opts: TaskOptions = toml::from_str("arith_ops = [\"add\", \"mul\"]\nreward = \"hash\"").unwrap();
    assert_eq!(opts.arith_ops.len(), 2);
    assert!(toml::from_str::<TaskOptions>("no_such_field = 1").is_err());
    let text = toml::to_string(&TaskOptions::default()).unwrap();
    assert_eq!(toml::from_str::<TaskOptions>(&text).unwrap(), TaskOptions::default());

    let s = TaskScore {
        task: "kl".into(),
        accuracy: f64::NAN,
        mean_reward: 0.5,
        metrics: [("kl".to_string(), 0.01)].into(),
    };
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"accuracy\":null"), "{json}");
    let back: TaskScore = serde_json::from_str(&json).unwrap();
    assert!(back.accuracy.is_nan() && back.mean_reward == 0.5 && back.metrics["kl"] == 0.01);
}

#[test]
fn minibatch_is_deterministic() {
    let task = target_task("arith", &TaskOptions::default()).unwrap();
    let a = evotune::tasks::minibatch(task.train(), 16, 1, 3);
    let b = evotune::tasks::minibatch(task.train(), 16, 1, 3);
    assert_eq!(a, b);
    assert_eq!(a.len(), 16);
    assert_eq!(evotune::tasks::minibatch(task.train(), 0, 1, 3).len(), 200);
}
