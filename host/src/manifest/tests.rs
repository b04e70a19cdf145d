//! One test per rule of Spin's that refuses a manifest (see the module
//! docs for where Spin checks each).

use super::*;

const APP: &str = r#"spin_manifest_version = 2
[application]
name = "a"
[variables]
redis_host = { default = "127.0.0.1" }
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "web.wasm"
"#;

fn refused(manifest: &str) -> String {
    match Manifest::parse(manifest) {
        Ok(_) => panic!("accepted:\n{manifest}"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_refused(manifest: &str, why: &str) {
    let err = refused(manifest);
    assert!(err.contains(why), "expected {why:?} in: {err}");
}

#[test]
fn the_base_app_is_accepted() {
    let m = Manifest::parse(APP).unwrap();
    assert_eq!(m.http[0].route.as_deref(), Some("/..."));
    assert_eq!(m.triggered().len(), 1);
}

#[test]
fn only_version_2() {
    assert_refused(
        &APP.replace("spin_manifest_version = 2", "spin_manifest_version = 3"),
        "invalid manifest version: 3",
    );
    assert_refused(
        &APP.replace("spin_manifest_version = 2", "spin_manifest_version = \"2\""),
        "invalid manifest version",
    );
}

#[test]
fn unknown_keys_are_refused_where_spin_refuses_them() {
    assert_refused(&format!("colour = 1\n{APP}"), "unknown field `colour`");
    assert_refused(
        &APP.replace("name = \"a\"", "name = \"a\"\nowner = \"me\""),
        "unknown field `owner`",
    );
    assert_refused(
        &format!("{APP}sorce = \"x.wasm\"\n"),
        "unknown field `sorce`",
    );
    assert_refused(
        &APP.replace(
            "{ default = \"127.0.0.1\" }",
            "{ default = \"x\", hidden = true }",
        ),
        "unknown field `hidden`",
    );
    assert_refused(
        &format!("{APP}[component.web.build]\ncommand = \"make\"\nworkdir2 = \"x\"\n"),
        "unknown field `workdir2`",
    );
    // What Spin knows but only other tools read is fine.
    Manifest::parse(&format!(
        "{APP}description = \"d\"\n[component.web.build]\ncommand = [\"a\", \"b\"]\nwatch = [\"src/**\"]\n[component.web.tool.x]\ny = 1\n"
    ))
    .unwrap();
}

#[test]
fn trigger_keys_are_the_trigger_types_own() {
    assert_refused(
        &APP.replace("route = \"/...\"", "route = \"/...\"\nmethod = \"GET\""),
        "unknown field `method`",
    );
    assert_refused(
        &APP.replace("route = \"/...\"\n", ""),
        "missing field `route`",
    );
    assert_refused(
        &APP.replace("route = \"/...\"", "route = { private = false }"),
        "route must be a string pattern or '{ private = true }'",
    );
    assert_refused(
        &APP.replace("route = \"/...\"", "route = \"/a/*/b\""),
        "Error parsing route /a/*/b associated with component web",
    );
    assert_refused(
        &APP.replace(
            "component = \"web\"",
            "static_response = { status_code = 200 }",
        ),
        "`static_response` is a Spin feature aies-host does not provide",
    );
    assert_refused(
        &APP.replace(
            "component = \"web\"",
            "component = \"web\"\nstatic_response = { status_code = 200 }",
        ),
        "has both",
    );
}

#[test]
fn triggers_name_components_that_exist() {
    assert_refused(
        &APP.replace("component = \"web\"", "component = \"wbe\""),
        "no such component \"wbe\"",
    );
}

#[test]
fn ids_follow_spins_grammar() {
    assert_refused(
        &APP.replace("[component.web]", "[component.web_page]")
            .replace("component = \"web\"", "component = \"web_page\""),
        "words must be separated with '-', not '_'",
    );
    assert_refused(
        &APP.replace("redis_host =", "redis-host ="),
        "words must be separated with '_', not '-'",
    );
    assert_refused(
        &format!("{APP}[component.web.variables]\nRedisHost = \"x\"\n"),
        "must be all lowercase",
    );
}

#[test]
fn a_variable_has_a_default_or_is_required() {
    assert_refused(
        &APP.replace("{ default = \"127.0.0.1\" }", "{ secret = true }"),
        "must be `required` OR have a `default`",
    );
    assert_refused(
        &APP.replace(
            "{ default = \"127.0.0.1\" }",
            "{ default = \"x\", required = true }",
        ),
        "must be `required` OR have a `default`",
    );
}

#[test]
fn no_triggers_no_app() {
    let none = APP
        .replace(
            "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n",
            "",
        )
        .replace(
            "spin_manifest_version = 2\n",
            "spin_manifest_version = 2\ntrigger = {}\n",
        );
    assert_refused(&none, "No triggers in app");
    assert_refused(
        &APP.replace(
            "[[trigger.http]]\nroute = \"/...\"\ncomponent = \"web\"\n",
            "",
        ),
        "missing field `trigger`",
    );
}

#[test]
fn unknown_trigger_types_are_refused() {
    assert_refused(
        &format!("{APP}[[trigger.sqs]]\nqueue_url = \"x\"\ncomponent = \"web\"\n"),
        "No built-in trigger named 'sqs'",
    );
}

#[test]
fn redis_trigger_settings() {
    let redis = format!(
        "{APP}[[trigger.redis]]\nchannel = \"done\"\ncomponent = \"fill\"\n[component.fill]\nsource = \"fill.wasm\"\n"
    );
    assert_refused(&redis, "no address");
    let with_default = redis.replace(
        "name = \"a\"\n",
        "name = \"a\"\n[application.trigger.redis]\naddress = \"redis://{{ redis_host }}:6379\"\n",
    );
    let m = Manifest::parse(&with_default).unwrap();
    assert_eq!(m.redis[0].address, "redis://{{ redis_host }}:6379");
    assert_refused(
        &with_default.replace("address = \"redis://", "adress = \"redis://"),
        "invalid metadata value for \"redis\"",
    );
    assert_refused(
        &with_default.replace("channel = \"done\"\n", ""),
        "missing field `channel`",
    );
    assert_refused(
        &with_default.replace("channel = \"done\"", "channel = \"done\"\nroute = \"/x\""),
        "unknown field `route`",
    );
    // One component on both triggers is Spin's too.
    let both = with_default.replace("component = \"fill\"", "component = \"web\"");
    let m = Manifest::parse(&both).unwrap();
    assert_eq!(m.redis[0].component, "web");
    assert_eq!(m.http[0].component, "web");
    assert_eq!(m.triggered().into_iter().collect::<Vec<_>>(), ["web"]);
}

#[test]
fn the_redis_trigger_offers_no_service_chaining() {
    let base = format!(
        "{APP}[[trigger.redis]]\naddress = \"redis://127.0.0.1:6379\"\nchannel = \"done\"\ncomponent = \"fill\"\n[component.fill]\nsource = \"fill.wasm\"\n"
    );
    for host in [
        "http://embed.spin.internal",
        "*://*.spin.internal:*",
        "https://cache-lookup.spin.internal:8443",
    ] {
        let err = refused(&format!("{base}allowed_outbound_hosts = [\"{host}\"]\n"));
        assert!(
            err.contains(
                "This application requires the following features that are not available in \
                 this version of the 'redis' trigger: local_service_chaining"
            ),
            "{host}: {err}"
        );
    }
    // An HTTP-triggered component may chain; a templated host is not read
    // as chaining (Spin reads literal entries only).
    Manifest::parse(&format!(
        "{base}allowed_outbound_hosts = [\"redis://{{{{ redis_host }}}}:6379\"]\n[component.web2]\nsource = \"w.wasm\"\nallowed_outbound_hosts = [\"http://fill.spin.internal\"]\n"
    ))
    .unwrap();
}

#[test]
fn allowed_outbound_hosts_are_read_at_load() {
    let with = |hosts: &str| format!("{APP}allowed_outbound_hosts = [{hosts}]\n");
    assert_refused(&with("\"example.com\""), "does not contain a scheme");
    assert_refused(
        &with("\"tcp://example.com\""),
        "does not have a known default port",
    );
    assert_refused(
        &with("\"insecure:allow-all\""),
        "'insecure:allow-all' is not allowed",
    );
    assert_refused(
        &with("\"redis://{{ redis_host\""),
        "unmatched '{{' in template",
    );
    // With its defaults, a template must make a valid entry.
    assert_refused(
        &with("\"redis://{{ redis_host }}/db\"").replace("127.0.0.1", "bad host"),
        "using default variable value(s) with template",
    );
    // A template whose variable is required (no default) waits for its value.
    Manifest::parse(&with("\"{{ endpoint }}\"").replace(
        "[variables]\n",
        "[variables]\nendpoint = { required = true }\n",
    ))
    .unwrap();
}

#[test]
fn features_aies_host_does_not_provide_are_refused_by_name() {
    for (key, value) in [
        ("files", "[\"assets/*\"]"),
        ("key_value_stores", "[\"default\"]"),
        ("sqlite_databases", "[\"default\"]"),
        ("allowed_http_hosts", "[\"example.com\"]"),
    ] {
        assert_refused(
            &format!("{APP}{key} = {value}\n"),
            &format!("`{key}` is a Spin feature aies-host does not provide"),
        );
    }
    assert_refused(
        &APP.replace(
            "source = \"web.wasm\"",
            "source = { url = \"https://x/w.wasm\", digest = \"sha256:0\" }",
        ),
        "runs local Wasm files only",
    );
    assert_refused(
        &format!("{APP}key_value_stores = [\"my.store\"]\n"),
        "expected kebab-case or snake_case",
    );
}

#[test]
fn component_variable_templates_name_defined_variables() {
    let vars = AppVariables::defaults(&Manifest::parse(APP).unwrap().variables);
    let m = Manifest::parse(&format!(
        "{APP}[component.web.variables]\nhost = \"{{{{ redis_hots }}}}\"\n"
    ))
    .unwrap();
    let err = format!(
        "{:#}",
        component_variables(&m.components["web"], &vars).unwrap_err()
    );
    assert!(
        err.contains("invalid variable template: unknown variable \"redis_hots\""),
        "{err}"
    );
    let m = Manifest::parse(&format!(
        "{APP}[component.web.variables]\nhost = \"{{{{ redis_host\"\n"
    ))
    .unwrap();
    let err = format!(
        "{:#}",
        component_variables(&m.components["web"], &vars).unwrap_err()
    );
    assert!(
        err.contains("invalid variable template: unmatched '{{' in template"),
        "{err}"
    );
}

#[test]
fn the_http_base_is_the_only_app_setting_and_must_be_slash() {
    let with = |v: &str| {
        APP.replace(
            "name = \"a\"\n",
            &format!("name = \"a\"\n[application.trigger.http]\n{v}\n"),
        )
    };
    Manifest::parse(&with("base = \"/\"")).unwrap();
    assert_refused(&with("base = \"/api\""), "deprecated trigger 'base' field");
    assert_refused(&with("port = 80"), "invalid metadata value for \"http\"");
}

#[test]
fn the_projects_own_manifest_passes() {
    let text = include_str!("../../../spin.toml");
    let m = Manifest::parse(text).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(m.redis.iter().any(|t| t.component == "cache-fill"));
}
