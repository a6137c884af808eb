//! Recipes from text: validated on the way in, every refusal naming the field.

use vortex_models::compute::Recipe;

fn refused(text: &str, field: &str, fragment: &str) {
    let err = Recipe::from_json(text).unwrap_err();
    assert_eq!(err.field, field, "{text}: {err}");
    assert!(err.to_string().contains(fragment), "{text}: {err}");
}

#[test]
fn a_json_recipe_with_defaults() {
    let r = Recipe::from_json(r#"{"slot_id": 7, "script": "Hello."}"#).unwrap();
    assert_eq!(
        r,
        Recipe {
            slot_id: 7,
            seed: 7,
            script: "Hello.".to_owned(),
            ..Recipe::default()
        }
    );
    let r = Recipe::from_json(
        r#"{"slot_id": 1, "seed": 9, "prompt": "a presenter", "script": "Hi.", "voice": "jf_alpha", "language": "en-gb"}"#,
    )
    .unwrap();
    assert_eq!(
        (r.seed, r.voice.as_str(), r.language.as_str()),
        (9, "jf_alpha", "en-gb")
    );
    // Deserialize validates too (the path an HTTP body takes).
    let err = serde_json::from_str::<Recipe>(r#"{"slot_id": 1, "script": ""}"#).unwrap_err();
    assert!(err.to_string().contains("`script`"), "{err}");
}

#[test]
fn bad_recipes_are_refused_naming_the_field() {
    refused(r#"{"slot_id": 1}"#, "recipe", "missing field `script`");
    refused(
        r#"{"slot_id": 1, "script": "Hi.", "speed": 2}"#,
        "recipe",
        "unknown field `speed`",
    );
    refused(r#"{"script": "Hi."}"#, "recipe", "slot_id");
    refused(
        r#"{"slot_id": -1, "script": "Hi."}"#,
        "recipe",
        "invalid value",
    );
    refused(r#"not json"#, "recipe", "JSON object");
    refused(r#"{"slot_id": 1, "script": "   "}"#, "script", "empty");
    refused(
        r#"{"slot_id": 1, "script": "a\u0007b"}"#,
        "script",
        "control character",
    );
    refused(
        r#"{"slot_id": 1, "script": "Hi.", "voice": "../etc"}"#,
        "voice",
        "not a name",
    );
    refused(
        r#"{"slot_id": 1, "script": "Hi.", "language": ""}"#,
        "language",
        "not a name",
    );
    let long = "x".repeat(Recipe::MAX_SCRIPT + 1);
    refused(
        &format!(r#"{{"slot_id": 1, "script": "{long}"}}"#),
        "script",
        "more than 5000",
    );
    let long = "é".repeat(Recipe::MAX_PROMPT + 1);
    refused(
        &format!(r#"{{"slot_id": 1, "script": "Hi.", "prompt": "{long}"}}"#),
        "prompt",
        "shorten it",
    );
}

#[test]
fn json_lines_give_many_and_say_which_line_is_bad() {
    let text = "# tonight\n{\"slot_id\": 1, \"script\": \"One.\"}\n\n{\"slot_id\": 2, \"script\": \"Two.\"}\n";
    let all = Recipe::from_json_lines(text).unwrap();
    assert_eq!(all.iter().map(|r| r.slot_id).collect::<Vec<_>>(), [1, 2]);
    let err = Recipe::from_json_lines("{\"slot_id\": 1, \"script\": \"One.\"}\n{\"slot_id\": 2}\n")
        .unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}
