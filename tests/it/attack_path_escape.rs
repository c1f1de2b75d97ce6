//! Path escape: encodings, dot-segments and doubled slashes must not route around the rules of
//! `/admin/`; paths above the root are refused.

use crate::common;

use common::*;

/// `/admin/` goes to its own upstream; everything else to `app`.
async fn setup() -> (TestUpstream, TestUpstream, TestProxy) {
    let app = TestUpstream::start().await;
    let admin = TestUpstream::start().await;
    let config = format!(
        "{}{}\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"admin\"\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[app.server()], ""),
        upstream_toml("admin", &[admin.server()], ""),
    );
    let proxy = TestProxy::start(&config).await;
    (app, admin, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_and_dotted_paths_meet_the_admin_route() {
    let (app, admin, proxy) = setup().await;
    for path in [
        "/%61dmin/",
        "/%61%64%6d%69%6e/panel",
        "/static/../admin/",
        "/static/%2e%2e/admin/",
        "/static/.%2E/admin/x",
        "//admin/",
        "///admin//users",
        "/./admin/",
        "/admin/./",
        "/x/y/../../admin/",
    ] {
        let before = admin.count();
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(
            admin.count(),
            before + 1,
            "{path} bypassed the /admin/ route"
        );
        assert_eq!(
            admin.last().uri,
            path,
            "{path}: the upstream must get the original path"
        );
    }
    assert_eq!(app.count(), 0, "an admin path was routed to the app");
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slashes_never_route_around_admin() {
    let (app, admin, proxy) = setup().await;
    for path in [
        "/admin%2Fx",
        "/admin%2fpanel",
        "/%2Fadmin/",
        "/static%2F..%2Fadmin/",
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert!(
            resp.status == 200 || resp.status == 400,
            "{path}: {}",
            resp.status
        );
        assert!(
            app.requests().iter().all(|r| r.uri != path),
            "{path} was routed to the app instead of /admin/ (or refused)"
        );
        if resp.status == 200 {
            assert_eq!(admin.last().uri, path);
        }
    }
    proxy.assert_still_serves().await;
    let _ = admin;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_above_the_root_and_bad_encodings_are_400() {
    let (app, admin, proxy) = setup().await;
    for path in [
        "/..",
        "/../",
        "/../etc/passwd",
        "/static/../../etc/passwd",
        "/%2e%2e/admin/",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/admin/../../x",
        "/a%00b",
        "/admin%00/",
        "/a%zz",
        "/a%4",
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert_eq!(resp.status, 400, "{path}");
        assert_proxy_error(&resp, 400, &resp.body_str(), "400 Bad Request\n", path);
    }
    assert_eq!(
        app.count() + admin.count(),
        0,
        "an escaping path reached an upstream"
    );
    proxy.assert_still_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_rules_of_admin_hold_for_encoded_paths() {
    let app = TestUpstream::start().await;
    let config = format!(
        "{}\
         [[routes]]\nname = \"admin\"\npath = \"/admin/\"\nupstream = \"app\"\nallow = [\"10.0.0.0/8\"]\n\n\
         [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"app\"\n",
        upstream_toml("app", &[app.server()], ""),
    );
    let proxy = TestProxy::start(&config).await;
    for path in [
        "/admin/",
        "/%61dmin/",
        "/static/../admin/",
        "//admin/",
        "/admin%2Fx",
    ] {
        let resp = one_response(&proxy.raw_h1(&get_close(path, "localhost")).await);
        assert_eq!(resp.status, 403, "{path} from 127.0.0.1 must be forbidden");
        assert_proxy_error(&resp, 403, &resp.body_str(), "403 Forbidden\n", path);
    }
    assert_eq!(
        app.count(),
        0,
        "a forbidden admin request reached the upstream"
    );
    proxy.assert_still_serves().await;
}
