//! The emulator's records (Accounts, Contacts) and Sugar's list API over them, spoken to over real
//! HTTP: paging with `offset`, `max_num` and `next_offset`, filters in a body or a query string,
//! counts, one record, Sugar's errors; and `metadata?type_filter=full_module_list`.

use serde_json::{Value, json};
use std::collections::HashSet;
use sugar_sessions::emulator::{Emulator, EmulatorConfig, InstanceConfig, demo_config};

async fn start_with(instances: Vec<InstanceConfig>) -> Emulator {
    Emulator::start(EmulatorConfig { instances }, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn instance(name: &str, accounts: usize, contacts: usize) -> InstanceConfig {
    InstanceConfig {
        accounts,
        contacts,
        ..InstanceConfig::new(name).with_platform("custom_api")
    }
}

fn client() -> reqwest::Client {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    });
    CLIENT.clone()
}

/// Status and body as JSON.
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

fn rest(emu: &Emulator, instance: &str, route: &str) -> String {
    format!("{}/rest/v11_4/{route}", emu.url(instance))
}

async fn login(emu: &Emulator, instance: &str) -> String {
    let body = json!({"grant_type": "password", "client_id": "sugar", "client_secret": "",
                      "username": "admin", "password": "admin", "platform": "custom_api"});
    let (status, json) = send(
        client()
            .post(rest(emu, instance, "oauth2/token"))
            .json(&body),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    json["access_token"].as_str().unwrap().to_string()
}

async fn get(emu: &Emulator, instance: &str, route: &str, token: &str) -> (u16, Value) {
    send(
        client()
            .get(rest(emu, instance, route))
            .header("OAuth-Token", token),
    )
    .await
}

async fn post(
    emu: &Emulator,
    instance: &str,
    route: &str,
    body: Value,
    token: &str,
) -> (u16, Value) {
    send(
        client()
            .post(rest(emu, instance, route))
            .header("OAuth-Token", token)
            .json(&body),
    )
    .await
}

fn error(json: &Value) -> (&str, &str) {
    (
        json["error"].as_str().unwrap_or("?"),
        json["error_message"].as_str().unwrap_or("?"),
    )
}

fn ids(json: &Value) -> Vec<String> {
    json["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records: {json}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every page of a list, following `next_offset` until -1; all records in order.
async fn all_pages(emu: &Emulator, route: &str, body: Option<Value>, token: &str) -> Vec<Value> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let (status, json) = match &body {
            None => {
                get(
                    emu,
                    "acme",
                    &format!("{route}?max_num=50&offset={offset}"),
                    token,
                )
                .await
            }
            Some(body) => {
                let mut body = body.clone();
                body["offset"] = json!(offset);
                body["max_num"] = json!(50);
                post(emu, "acme", route, body, token).await
            }
        };
        assert_eq!(status, 200, "{json}");
        let page = json["records"].as_array().unwrap();
        assert!(page.len() <= 50);
        records.extend(page.iter().cloned());
        match json["next_offset"].as_i64().unwrap() {
            -1 => return records,
            next => {
                assert_eq!(next, offset + 50);
                assert_eq!(page.len(), 50);
                offset = next;
            }
        }
    }
}

#[tokio::test]
async fn records_need_a_valid_access_token() {
    let emu = start_with(vec![instance("acme", 30, 40)]).await;
    let bogus = "802b64c0-5eac-8431-a541-5342d38ac527";
    for route in [
        "Accounts",
        "Contacts/count",
        "Accounts/filter",
        "Nope",
        "Accounts/x",
    ] {
        let (status, json) = send(client().get(rest(&emu, "acme", route))).await;
        assert_eq!((status, error(&json).0), (401, "need_login"), "{route}");
        let (status, json) = get(&emu, "acme", route, bogus).await;
        assert_eq!(
            (status, error(&json)),
            (
                401,
                ("invalid_grant", "The access token provided is invalid.")
            ),
            "{route}"
        );
    }
    let (status, json) = post(&emu, "acme", "Accounts/filter", json!({}), bogus).await;
    assert_eq!((status, error(&json).0), (401, "invalid_grant"));
}

#[tokio::test]
async fn lists_page_with_offset_max_num_and_next_offset() {
    let emu = start_with(vec![instance("acme", 130, 1234)]).await;
    let token = login(&emu, "acme").await;

    // Default page: 20 records, next_offset 20.
    let (status, first) = get(&emu, "acme", "Accounts", &token).await;
    assert_eq!(status, 200);
    assert_eq!(first["next_offset"], 20);
    assert_eq!(ids(&first).len(), 20);
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["next_offset", "records"]);

    // Every page: each account once, newest date_modified first.
    let all = all_pages(&emu, "Accounts", None, &token).await;
    assert_eq!(all.len(), 130);
    let unique: HashSet<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(unique.len(), 130);
    let modified: Vec<&str> = all
        .iter()
        .map(|r| r["date_modified"].as_str().unwrap())
        .collect();
    assert!(modified.windows(2).all(|w| w[0] > w[1]), "{modified:?}");
    assert_eq!(
        ids(&first),
        all[..20]
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
    // The last page ends with -1; past the end and `end` are empty.
    let (_, last) = get(&emu, "acme", "Accounts?offset=120&max_num=10", &token).await;
    assert_eq!((ids(&last).len(), &last["next_offset"]), (10, &json!(-1)));
    for query in ["offset=500", "offset=end"] {
        let (_, past) = get(&emu, "acme", &format!("Accounts?{query}"), &token).await;
        assert_eq!(past, json!({"next_offset": -1, "records": []}), "{query}");
    }

    // max_num is capped at 1000, also when below 1.
    for max_num in ["5000", "-1"] {
        let (_, capped) = get(&emu, "acme", &format!("Contacts?max_num={max_num}"), &token).await;
        assert_eq!(
            (ids(&capped).len(), &capped["next_offset"]),
            (1000, &json!(1000))
        );
    }
    // POST filter takes the paging parameters from the body.
    let all_contacts = all_pages(&emu, "Contacts/filter", Some(json!({})), &token).await;
    assert_eq!(all_contacts.len(), 1234);

    // `fields` narrows each record; order_by reorders.
    let (_, narrow) = get(&emu, "acme", "Accounts?fields=name&max_num=3", &token).await;
    for record in narrow["records"].as_array().unwrap() {
        let keys: Vec<&String> = record.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "name", "date_modified", "_module"]);
    }
    let (_, by_name) = get(
        &emu,
        "acme",
        "Accounts?order_by=name:asc&max_num=1000",
        &token,
    )
    .await;
    let names: Vec<String> = by_name["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]));
    let (status, json) = get(&emu, "acme", "Accounts?order_by=nope", &token).await;
    assert_eq!(
        (status, error(&json)),
        (422, ("invalid_parameter", "Unknown field nope"))
    );

    // The request log has them like any other route.
    let recorded = emu.requests().last().unwrap().clone();
    assert_eq!(
        (recorded.path.as_str(), recorded.status),
        ("/Accounts", 422)
    );
}

#[tokio::test]
async fn records_are_the_same_every_run_and_linked() {
    let one = start_with(vec![instance("acme", 60, 90), instance("globex", 60, 90)]).await;
    let two = start_with(vec![instance("acme", 60, 90)]).await;
    let (t1, t2) = (login(&one, "acme").await, login(&two, "acme").await);
    let (_, a) = get(&one, "acme", "Contacts?max_num=90", &t1).await;
    let (_, b) = get(&two, "acme", "Contacts?max_num=90", &t2).await;
    assert_eq!(a, b);
    let tg = login(&one, "globex").await;
    let (_, g) = get(&one, "globex", "Contacts?max_num=90", &tg).await;
    assert_ne!(ids(&a), ids(&g));

    let (_, account) = get(&one, "acme", "Accounts?max_num=1", &t1).await;
    let account = &account["records"][0];
    for key in [
        "name",
        "industry",
        "billing_address_city",
        "date_modified",
        "date_entered",
    ] {
        assert!(
            !account[key].as_str().unwrap().is_empty(),
            "{key}: {account}"
        );
    }
    assert_eq!(account["_module"], "Accounts");
    let id = account["id"].as_str().unwrap();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12]);

    // Each contact's account_id is one of the accounts, whose name it carries.
    for contact in a["records"].as_array().unwrap() {
        for key in ["first_name", "last_name", "email1"] {
            assert!(!contact[key].as_str().unwrap().is_empty(), "{key}");
        }
        assert_eq!(contact["email"][0]["email_address"], contact["email1"]);
        let account_id = contact["account_id"].as_str().unwrap();
        let (status, account) = get(&one, "acme", &format!("Accounts/{account_id}"), &t1).await;
        assert_eq!(status, 200);
        assert_eq!(account["name"], contact["account_name"]);
    }
}

#[tokio::test]
async fn filters_in_a_body_or_a_query_string_and_counts() {
    let emu = start_with(vec![instance("acme", 300, 10)]).await;
    let token = login(&emu, "acme").await;
    let all = all_pages(&emu, "Accounts", None, &token).await;
    let name = |r: &Value| r["name"].as_str().unwrap().to_string();

    // `$starts`, case-insensitive like MySQL's default collation.
    let prefix = name(&all[0])[..3].to_string();
    let expected: Vec<&Value> = all
        .iter()
        .filter(|r| name(r).to_lowercase().starts_with(&prefix.to_lowercase()))
        .collect();
    let filter = json!([{"name": {"$starts": prefix.to_uppercase()}}]);
    let got = all_pages(
        &emu,
        "Accounts/filter",
        Some(json!({"filter": filter})),
        &token,
    )
    .await;
    assert_eq!(got.iter().collect::<Vec<_>>(), expected);

    // Counts: all, then the same filter as JSON text and as PHP brackets in the query.
    let (status, count) = get(&emu, "acme", "Accounts/count", &token).await;
    assert_eq!((status, count), (200, json!({"record_count": 300})));
    let encoded: String =
        url::form_urlencoded::byte_serialize(filter.to_string().as_bytes()).collect();
    let (_, count) = get(
        &emu,
        "acme",
        &format!("Accounts/count?filter={encoded}"),
        &token,
    )
    .await;
    assert_eq!(count["record_count"], expected.len());
    let brackets = format!(
        "Accounts/count?filter[0][name][%24starts]={}",
        prefix.to_uppercase()
    );
    let (_, count) = get(&emu, "acme", &brackets, &token).await;
    assert_eq!(count["record_count"], expected.len());
    let (_, count) = post(
        &emu,
        "acme",
        "Accounts/filter/count",
        json!({"filter": filter}),
        &token,
    )
    .await;
    assert_eq!(count["record_count"], expected.len());

    // A plain value is `$equals`; definitions are AND-ed; `$or` and `$in` (also in brackets).
    let industry = all[0]["industry"].as_str().unwrap();
    let city = all[0]["billing_address_city"].as_str().unwrap();
    let in_brackets = format!(
        "Accounts/count?filter[0][industry][%24in][]={industry}&filter[0][industry][%24in][]=Banking"
    );
    let (_, count) = get(&emu, "acme", &in_brackets, &token).await;
    assert_eq!(
        count["record_count"],
        all.iter()
            .filter(|r| r["industry"] == industry || r["industry"] == "Banking")
            .count()
    );
    let count_of = |pred: &dyn Fn(&Value) -> bool| all.iter().filter(|r| pred(r)).count();
    let cases = [
        (
            json!([{"industry": industry}]),
            count_of(&|r| r["industry"] == industry),
        ),
        (
            json!([{"industry": industry}, {"billing_address_city": city}]),
            count_of(&|r| r["industry"] == industry && r["billing_address_city"] == city),
        ),
        (
            json!([{"$or": [{"industry": industry}, {"billing_address_city": city}]}]),
            count_of(&|r| r["industry"] == industry || r["billing_address_city"] == city),
        ),
        (
            json!([{"industry": {"$in": [industry, "Banking"]}}]),
            count_of(&|r| r["industry"] == industry || r["industry"] == "Banking"),
        ),
        (
            json!([{"industry": {"$not_equals": industry}}]),
            count_of(&|r| r["industry"] != industry),
        ),
    ];
    for (filter, expected) in cases {
        let (status, json) = post(
            &emu,
            "acme",
            "Accounts/filter",
            json!({"filter": filter, "max_num": 1000}),
            &token,
        )
        .await;
        assert_eq!((status, ids(&json).len()), (200, expected), "{filter}");
        assert!(expected > 0, "{filter}");
    }

    // Sugar's errors for what it would not understand.
    let refused = [
        (json!({"filter": [{"nope": "x"}]}), "Unknown field nope"),
        (
            json!({"filter": [{"name": {"$like": "x"}}]}),
            "Did not recognize the operand: $like",
        ),
        (
            json!({"filter": [{"name": {"$in": "x"}}]}),
            "$in requires an array",
        ),
        (json!({"filter": "x"}), "Unexpected filter type string."),
        (json!({"filter": 3}), "Unexpected filter type integer."),
    ];
    for (body, message) in refused {
        let (status, json) = post(&emu, "acme", "Accounts/filter", body.clone(), &token).await;
        assert_eq!(
            (status, error(&json)),
            (422, ("invalid_parameter", message)),
            "{body}"
        );
    }
    // An empty filter is no filter.
    let (_, json) = get(&emu, "acme", "Accounts/count?filter=", &token).await;
    assert_eq!(json["record_count"], 300);
}

#[tokio::test]
async fn one_record_unknown_records_and_modules() {
    let emu = start_with(vec![instance("acme", 25, 25)]).await;
    let token = login(&emu, "acme").await;
    let (_, list) = get(&emu, "acme", "Contacts?max_num=1", &token).await;
    let contact = &list["records"][0];
    let id = contact["id"].as_str().unwrap();
    let (status, one) = get(&emu, "acme", &format!("Contacts/{id}"), &token).await;
    assert_eq!((status, &one), (200, contact));

    // Not in this module, not at all: 404 not_found in Sugar's error shape.
    for route in [format!("Accounts/{id}"), "Contacts/nope".to_string()] {
        let (status, json) = get(&emu, "acme", &route, &token).await;
        assert_eq!((status, error(&json).0), (404, "not_found"), "{route}");
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error", "error_message"]);
    }
    let (_, json) = get(&emu, "acme", "Contacts/nope", &token).await;
    assert_eq!(
        error(&json).1,
        "Could not find record: nope in module: Contacts"
    );
    for route in ["Widgets", "Widgets/count", "Widgets/some-id"] {
        let (status, json) = get(&emu, "acme", route, &token).await;
        assert_eq!(
            (status, error(&json)),
            (404, ("not_found", "Could not find module: Widgets")),
            "{route}"
        );
    }
    let (status, json) = post(&emu, "acme", "Widgets/filter", json!({}), &token).await;
    assert_eq!((status, error(&json).0), (404, "not_found"));
    // A module of the list without generated records is empty, not unknown.
    let (_, json) = get(&emu, "acme", "Leads", &token).await;
    assert_eq!(json, json!({"next_offset": -1, "records": []}));
    let (_, json) = get(&emu, "acme", "Leads/count", &token).await;
    assert_eq!(json, json!({"record_count": 0}));
    // Routes the emulator does not have stay no_method.
    let (status, json) = get(&emu, "acme", "Accounts/x/y", &token).await;
    assert_eq!((status, error(&json).0), (404, "no_method"));
    let (status, json) = post(&emu, "acme", "Accounts", json!({"name": "New"}), &token).await;
    assert_eq!((status, error(&json).0), (404, "no_method"));
}

#[tokio::test]
async fn metadata_full_module_list_has_its_hash() {
    let emu = start_with(vec![instance("acme", 1, 1)]).await;
    let token = login(&emu, "acme").await;
    let (status, json) = get(
        &emu,
        "acme",
        "metadata?type_filter=full_module_list",
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let list = json["full_module_list"].as_object().unwrap();
    for module in ["Accounts", "Contacts", "Leads"] {
        assert_eq!(list[module], module);
    }
    let hash = list["_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 32);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(json.get("server_info").is_none());
    // Other requests keep their answer.
    let (_, json) = get(&emu, "acme", "metadata?type_filter=server_info", &token).await;
    assert!(json.get("full_module_list").is_none());
    assert!(json["server_info"].is_object());
    let (_, json) = get(&emu, "acme", "metadata", &token).await;
    assert!(json.get("full_module_list").is_none() && json["config"].is_object());
}

#[tokio::test]
async fn demo_instances_hold_accounts_and_contacts() {
    let emu = Emulator::start(demo_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let body = json!({"grant_type": "password", "client_id": "acme_integration",
                      "client_secret": "acme-client-secret", "username": "integration",
                      "password": "acme-integration-pw", "platform": "acme_sync"});
    let (status, json) = send(
        client()
            .post(rest(&emu, "acme", "oauth2/token"))
            .json(&body),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let token = json["access_token"].as_str().unwrap();
    for (module, count) in [("Accounts", 320), ("Contacts", 760)] {
        let (_, json) = get(&emu, "acme", &format!("{module}/count"), token).await;
        assert_eq!(json["record_count"], count, "{module}");
    }
}
