use super::*;

fn roots() -> Vec<&'static str> {
    vec!["source", "record", "settings", "steps"]
}

#[test]
fn single_expression_keeps_its_type() {
    let t = Template::compile("{{ [1, 2] | map('string') | list }}", &roots(), &[])
        .ok()
        .unwrap();
    assert_eq!(
        t.eval(&Value::from(())).unwrap(),
        serde_json::json!(["1", "2"])
    );
    let t = Template::compile("Hello {{ 1 + 1 }}", &roots(), &[])
        .ok()
        .unwrap();
    assert_eq!(
        t.eval(&Value::from(())).unwrap(),
        serde_json::json!("Hello 2")
    );
    assert!(
        Template::compile("plain", &roots(), &[])
            .ok()
            .unwrap()
            .is_literal()
    );
}

#[test]
fn plain_lookups_read_json_directly() {
    use std::sync::Arc;
    let scope = Value::from_object(Scope {
        source: Arc::new(serde_json::json!({"PHONE": [{"VALUE": "8 926"}], "ID": "7"})),
        record: Arc::new(Json::Null),
        steps: Arc::new(serde_json::json!({})),
        settings: Arc::new(serde_json::json!({})),
        run: Value::from(()),
        outcome: Value::from(()),
        error: Value::from(()),
    });
    let t = Template::compile("{{ source.PHONE[0].VALUE }}", &roots(), &[])
        .ok()
        .unwrap();
    assert!(matches!(t.0.compiled, Compiled::Native(..)));
    assert_eq!(t.eval(&scope).unwrap(), serde_json::json!("8 926"));
    let t = Template::compile("{{ source.MISSING.X }}", &roots(), &[])
        .ok()
        .unwrap();
    assert_eq!(t.eval(&scope).unwrap(), Json::Null);
    let t = Template::compile("{{ source.X + 1 }}", &roots(), &[])
        .ok()
        .unwrap();
    assert!(matches!(t.0.compiled, Compiled::Expr(..)));
}

fn scope_of(source: Json) -> Value {
    let settings = serde_json::json!({
        "products": {"404": "chess", "410": "online", "7": null, "true": "yes", "none": "NONE", "": "EMPTY"},
        "field": "NAME", "index": 1, "flag": true,
        "rules": [
            {"when": {"product": "410"}, "course": ["A", "B"]},
            {"when": {"product": ["404", "7"], "branch": "Иван"}, "course": ["B", "C"]},
            {"when": {"product": "abc"}, "course": "D"},
        ],
        "bad_rules": [{"course": "no when"}],
    });
    Value::from_object(Scope {
        source: Arc::new(source),
        record: Arc::new(serde_json::json!({"x": 1})),
        steps: Arc::new(serde_json::json!({"s": {"ID": "5"}})),
        settings: Arc::new(settings),
        run: Value::from(()),
        outcome: Value::from(()),
        error: Value::from(()),
    })
}

/// The native evaluator gives what the template VM gives: values, none/undefined, errors.
#[test]
fn native_evaluation_equals_the_vm() {
    let templates = [
        // lookups
        "{{ source.NAME }}",
        "{{ source.PHONE[0].VALUE }}",
        "{{ source.PHONE[-1].VALUE }}",
        "{{ source.PHONE[5] }}",
        "{{ source['NAME'] }}",
        "{{ source[settings.field] }}",
        "{{ source.PHONE[settings.index] }}",
        "{{ source.MISSING }}",
        "{{ source.MISSING.X }}",
        "{{ source.NULLV.X }}",
        "{{ source.NAME.X }}",
        "{{ source.NAME[0] }}",
        "{{ source.PHONE.VALUE }}",
        "{{ source.NUM }}",
        "{{ source.BIG }}",
        "{{ source.FLOAT }}",
        "{{ source.OBJ[0] }}",
        "{{ source }}",
        "{{ steps.s.ID }}",
        "{{ record.x }}",
        "{{ source[settings.MISSING] }}",
        "{{ source[source.NUM] }}",
        // our filters
        "{{ source.PHONE | first | attr('VALUE') | phone }}",
        "{{ source.NAME | phone }}",
        "{{ source.NUM | phone }}",
        "{{ source.V | phone }}",
        "{{ source.V | date }}",
        "{{ source.V | money }}",
        "{{ source.V | to_number }}",
        "{{ source.BIRTHDATE | date }}",
        "{{ source.OPPORTUNITY | money }}",
        "{{ source.V | map_values(settings.products) }}",
        "{{ source.V | map_values(settings.MISSING) }}",
        "{{ source.V | map_values({'404': 'x', '410': none}) }}",
        "{{ source.V | map_values(source.NAME) }}",
        "{{ source.V | lookup(settings.products) }}",
        "{{ source.V | lookup(settings.products, 'other') }}",
        "{{ source.V | lookup(settings.products, source.MISSING) }}",
        "{{ source.V | lookup(settings.products, source.NULLV) }}",
        "{{ source.V | lookup(source.V) }}",
        "{{ source.V | lookup(settings.products, source.MISSING) | default('d') }}",
        "{{ source.V | flatten }}",
        "{{ source.V | unique_list }}",
        "{{ source.V | compact }}",
        "{{ source.V | flatten | unique_list | join(',') }}",
        // builtins
        "{{ source.V | first }}",
        "{{ source.V | last }}",
        "{{ source.V | attr('VALUE') }}",
        "{{ source.V | trim }}",
        "{{ source.V | lower }}",
        "{{ source.V | upper }}",
        "{{ source.V | string }}",
        "{{ source.V | length }}",
        "{{ source.V | default('x') }}",
        "{{ source.V | default('x', true) }}",
        "{{ source.V | default(settings.products) }}",
        "{{ source.V | default }}",
        "{{ source.V | default(source.MISSING) | default('y') }}",
        "{{ source.V | join(', ') }}",
        "{{ source.V | join }}",
        "{{ source.V | first | first }}",
        "{{ source.V | last | upper }}",
        // text
        "{{ source.LAST_NAME }} {{ source.NAME }}",
        "Hi {{ source.MISSING }}!",
        "{{ source.V }}",
        "{{ source.V }}-{{ source.NUM }}-{{ source.FLOAT }}",
        "{{- source.NAME }} x {{ source.NAME -}}  \n",
        "a\n{{ source.NAME }}\n",
        "[{{ source.V | map_values(settings.products) }}]",
        "{{ source.PHONE | first | attr('VALUE') | phone }} ok",
        "{{ source.V | phone }}/{{ source.V | first }}",
        "{{ source.V | length }} items",
        // operators
        "{{ not source.V }}",
        "{{ source.V and source.NAME }}",
        "{{ source.V or 'x' }}",
        "{{ source.V | trim or none }}",
        "{{ source.MISSING or none }}",
        "{{ source.MISSING and source.V }}",
        "{{ (source.LAST_NAME | trim) ~ ' ' ~ (source.NAME | trim) }}",
        "{{ source.V ~ '!' }}",
        "{{ source.MISSING ~ source.NUM }}",
        "{{ source.V | length > 0 }}",
        "{{ source.V == 'abc' }}",
        "{{ source.V != 404 }}",
        "{{ source.NUM < source.V }}",
        "{{ source.V >= 0 }}",
        "{{ ' ' in source.V }}",
        "{{ 'a' in source.V }}",
        "{{ 404 in source.V }}",
        "{{ source.V not in ['a', 'b'] }}",
        "{{ source.V in source.MISSING }}",
        "{{ not (source.NAME and ' ' in source.NAME | trim and not source.LAST_NAME) }}",
        "{{ source.NAME | trim and source.LAST_NAME | trim }}",
        "{{ 'const' }}",
        // list filters
        "{{ source.V | map(attribute='VALUE') }}",
        "{{ source.PHONE | map(attribute='VALUE') | join(',') }}",
        "{{ settings.rules | match_rules(product=source.V) }}",
        "{{ settings.rules | match_rules(product=source.V, branch=source.NAME) | map(attribute='course') | flatten | unique_list }}",
        "{{ settings.bad_rules | match_rules(product=source.V) }}",
        "{{ source.V | match_rules(product=source.V) }}",
        "{{ source.V and 'y' }}-{{ not source.V }}-{{ source.V | length > 1 }}",
    ];
    let values = [
        serde_json::json!(null),
        serde_json::json!(""),
        serde_json::json!("  "),
        serde_json::json!("Иван Петров "),
        serde_json::json!("8 (926) 123-45-67"),
        serde_json::json!("12345"),
        serde_json::json!(9261234567i64),
        serde_json::json!(0),
        serde_json::json!(404),
        serde_json::json!(7.5),
        serde_json::json!(-3),
        serde_json::json!(true),
        serde_json::json!(false),
        serde_json::json!([]),
        serde_json::json!([404, 410, 999]),
        serde_json::json!(["404", 7, null]),
        serde_json::json!([[1, 2], [2, 3], 4]),
        serde_json::json!([1, 1.0, "1", true, null, "", " ", "x", "x"]),
        serde_json::json!({"VALUE": "8 926 123 45 67", "TYPE": "WORK"}),
        serde_json::json!({}),
        serde_json::json!([{"VALUE": 1}]),
        serde_json::json!("2014-11-26T03:00:00+03:00"),
        serde_json::json!("26.11.2014"),
        serde_json::json!("8700,5"),
        serde_json::json!("1,5"),
        serde_json::json!("nan"),
        serde_json::json!(18446744073709551615u64),
        serde_json::json!(1e100),
        serde_json::json!("abc"),
        serde_json::json!(["a", "b", "c"]),
        serde_json::json!({"404": 1, "b": [1]}),
    ];
    let mut records = vec![
        serde_json::json!({}),
        serde_json::json!(null),
        serde_json::json!("text"),
    ];
    for v in &values {
        records.push(serde_json::json!({
            "NAME": "Иван", "LAST_NAME": "Петров", "PHONE": [{"VALUE": "8 (926) 123-45-67"}, {"VALUE": "+7 926 1234567"}],
            "NUM": 1, "BIG": 18446744073709551615u64, "FLOAT": 2.5, "NULLV": null, "OBJ": {"a": 1},
            "BIRTHDATE": "2009-11-29T03:00:00+03:00", "OPPORTUNITY": "1001", "V": v,
        }));
    }
    records.push(
        serde_json::json!({"PHONE": [], "OPPORTUNITY": "n/a", "BIRTHDATE": "yesterday", "NAME": 5}),
    );
    records.push(
        serde_json::json!({"PHONE": [{"VALUE": "12345"}], "OPPORTUNITY": null, "NAME": ["a"]}),
    );
    records.push(
        serde_json::json!({"PHONE": "8 926 123 45 67", "OPPORTUNITY": 9000, "NAME": {"a": 1}}),
    );
    records.push(serde_json::json!({"PHONE": [{"NO": 1}], "OPPORTUNITY": 9000.5}));
    let (mut native, mut total) = (0, 0);
    for source in templates {
        let t = Template::compile(source, &roots(), &["s".into()])
            .ok()
            .unwrap();
        assert!(
            matches!(
                t.0.compiled,
                Compiled::Native(..) | Compiled::NativeText(..)
            ),
            "{source} is not native"
        );
        for record in &records {
            let scope = scope_of(record.clone());
            let vm = t.eval_vm(&scope);
            let fast = t.eval_native(scope.downcast_object_ref::<Scope>().unwrap());
            total += 1;
            match fast {
                Err(Fail::Vm) => {}
                Ok(v) => {
                    native += 1;
                    assert_eq!(Ok(v), vm, "{source} on {record}");
                }
                Err(Fail::Error(e)) => {
                    native += 1;
                    assert_eq!(Err(e), vm, "{source} on {record}");
                }
            }
            assert_eq!(t.eval(&scope), vm, "{source} on {record}");
            let vm_test = match &t.0.compiled {
                Compiled::Native(_, e) => e
                    .eval(scope.clone())
                    .map(|v| v.is_true())
                    .map_err(|e| error_text(&e)),
                _ => vm.clone().map(|s| {
                    !matches!(
                        s.as_str().unwrap_or_default().trim(),
                        "" | "false" | "False" | "0"
                    )
                }),
            };
            assert_eq!(t.test(&scope), vm_test, "test of {source} on {record}");
        }
    }
    // Most cases are answered natively; the rest are left to the VM on purpose (the operator
    // templates meet every kind of value, and compare or print most kinds through the VM).
    assert!(
        native * 3 > total * 2,
        "only {native} of {total} evaluated natively"
    );
}

#[test]
fn reports_unknown_filters_variables_and_steps_with_positions() {
    let errs = Template::compile("{{ source.PHONE | phnoe }}", &roots(), &[])
        .err()
        .unwrap();
    assert_eq!((errs[0].line, errs[0].col), (0, 18));
    assert!(
        errs[0].message.contains("did you mean `phone`"),
        "{}",
        errs[0].message
    );

    let errs = Template::compile("{{ sorce.NAME }}", &roots(), &[])
        .err()
        .unwrap();
    assert!(
        errs[0].message.contains("did you mean `source`"),
        "{}",
        errs[0].message
    );

    let errs = Template::compile("{{ steps.usr.NAME }}", &roots(), &["user".into()])
        .err()
        .unwrap();
    assert!(
        errs[0].message.contains("unknown step reference `usr`"),
        "{}",
        errs[0].message
    );

    let errs = Template::compile("{{ source.NAME ", &roots(), &[])
        .err()
        .unwrap();
    assert!(
        errs[0].message.starts_with("template syntax error"),
        "{}",
        errs[0].message
    );
}
