//! `[ban]` (the jail's rule, `allow`, the store) and a route's `ban`.

#[allow(unused_imports)]
use super::*;
use crate::config::units;
use crate::policy::ban::{BanRule, Bans, Jail, JailSettings};

/// Statuses a jail may count: client and server errors.
const STRIKE_STATUSES: std::ops::RangeInclusive<u16> = 400..=599;
/// The most strikes a rule may wait for, and the longest window and ban.
const MAX_AFTER: u32 = 1_000_000;
const MAX_BAN_TIME: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

/// `[ban]`: the jail's rule, `allow`, and the jail itself (a fresh one: the reloader hands the
/// running server's jail to the new snapshot). Connects nowhere.
pub(super) fn ban_settings(v: &mut Validator<'_>, file: &model::File) -> Bans {
    let written = file.ban.as_ref().map(Spanned::get_ref);
    let defaults = model::Ban::default();
    let ban = written.unwrap_or(&defaults);
    let strikes = strike_statuses(v, &ban.strikes, "ban.strikes");
    let after = ban_after(v, &ban.after, "ban.after");
    let within = ban_time(v, &ban.within, "ban.within");
    let ban_for = ban_time(v, &ban.ban_for, "ban.for");
    let mut redis = None;
    match ban.store.get_ref().as_str() {
        "local" => {}
        "redis" => match &file.rate_limit.redis_url {
            None => v.at(
                &ban.store,
                "ban.store",
                "store = \"redis\" uses [rate_limit].redis_url, which is not set",
            ),
            Some(url) => redis = Some((url.clone(), file.rate_limit.redis_timeout.0)),
        },
        _ => v.at(&ban.store, "ban.store", "expected \"local\" or \"redis\""),
    }
    let max_keys = bounded_max_keys(
        v,
        ban.max_keys,
        "ban.max_keys",
        "the jail's memory bound, about 90 bytes a key",
    );
    let settings = JailSettings { max_keys, redis };
    let jail = match Jail::new(settings.clone()) {
        Ok(jail) => jail,
        Err(err) => {
            v.near(
                0..0,
                "rate_limit.redis_url",
                format!("not a Redis URL (like \"redis://127.0.0.1:6379\"): {err}"),
            );
            Jail::new(JailSettings {
                redis: None,
                ..settings
            })
            .unwrap_or_else(|_| unreachable!("a local jail cannot fail"))
        }
    };
    let default_rule = written.map(|_| {
        Arc::new(BanRule {
            strikes,
            after,
            within,
            ban_for,
            scope: "*".into(),
        })
    });
    Bans {
        jail: Arc::new(jail),
        default_rule,
        allow: ban.allow.iter().map(|c| c.0).collect(),
    }
}

/// A list of strike statuses: 400 to 599, at least one.
fn strike_statuses(v: &mut Validator<'_>, list: &[Spanned<u16>], key: &str) -> Vec<u16> {
    if list.is_empty() {
        v.near(0..0, key, "list at least one status, like [429]");
    }
    let mut statuses: Vec<u16> = Vec::with_capacity(list.len());
    for status in list {
        if STRIKE_STATUSES.contains(status.get_ref()) {
            statuses.push(*status.get_ref());
        } else {
            v.at(
                status,
                key,
                "a strike is a status from 400 to 599 (what the client was refused with)",
            );
        }
    }
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn ban_after(v: &mut Validator<'_>, after: &Spanned<u32>, key: &str) -> u32 {
    let value = *after.get_ref();
    if !(1..=MAX_AFTER).contains(&value) {
        v.at(after, key, format!("must be from 1 to {MAX_AFTER} strikes"));
    }
    value.max(1)
}

fn ban_time(
    v: &mut Validator<'_>,
    time: &Spanned<units::Duration>,
    key: &str,
) -> std::time::Duration {
    let value = time.get_ref().0;
    if value < std::time::Duration::from_secs(1) || value > MAX_BAN_TIME {
        v.near(time.span(), key, "must be from 1s to 366d");
    }
    value.max(std::time::Duration::from_secs(1))
}

/// A route's `ban`: `false` turns the jail off here, `true` (or nothing) keeps `[ban]`'s rule,
/// a table is the route's own rule (its own strike count), merged over `[ban]`'s values.
pub(super) fn route_ban(
    v: &mut Validator<'_>,
    route: &model::Route,
    name: &str,
    prefix: &str,
    bans: &Bans,
) -> Option<Arc<BanRule>> {
    let Some(written) = &route.ban else {
        return bans.default_rule.clone();
    };
    let rule = match written.get_ref() {
        model::RouteBan::Switch(false) => return None,
        model::RouteBan::Switch(true) => {
            return Some(bans.default_rule.clone().unwrap_or_else(|| {
                let defaults = model::Ban::default();
                Arc::new(BanRule {
                    strikes: defaults.strikes.iter().map(|s| *s.get_ref()).collect(),
                    after: *defaults.after.get_ref(),
                    within: defaults.within.get_ref().0,
                    ban_for: defaults.ban_for.get_ref().0,
                    scope: "*".into(),
                })
            }))
        }
        model::RouteBan::Rule(rule) => rule,
    };
    let defaults = model::Ban::default();
    let base = bans.default_rule.as_deref();
    let key = |sub: &str| format!("{prefix}.ban.{sub}");
    let strikes = match &rule.strikes {
        Some(list) => strike_statuses(v, list, &key("strikes")),
        None => base.map_or_else(|| vec![429], |b| b.strikes.clone()),
    };
    let after = match &rule.after {
        Some(after) => ban_after(v, after, &key("after")),
        None => base.map_or(*defaults.after.get_ref(), |b| b.after),
    };
    let within = match &rule.within {
        Some(within) => ban_time(v, within, &key("within")),
        None => base.map_or(defaults.within.get_ref().0, |b| b.within),
    };
    let ban_for = match &rule.ban_for {
        Some(ban_for) => ban_time(v, ban_for, &key("for")),
        None => base.map_or(defaults.ban_for.get_ref().0, |b| b.ban_for),
    };
    Some(Arc::new(BanRule {
        strikes,
        after,
        within,
        ban_for,
        scope: name.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_config::*;

    #[test]
    fn jail_settings_and_route_rules() {
        assert_eq!(error_keys("[ban]\nafter = 0"), ["ban.after"]);
        assert_eq!(error_keys("[ban]\nstrikes = [200]"), ["ban.strikes"]);
        assert_eq!(error_keys("[ban]\nstrikes = []"), ["ban.strikes"]);
        assert_eq!(error_keys("[ban]\nfor = \"0s\""), ["ban.for"]);
        assert_eq!(error_keys("[ban]\nstore = \"redis\""), ["ban.store"]);
        assert_eq!(error_keys("[ban]\nmax_keys = 10"), ["ban.max_keys"]);
        let route = |ban: &str| {
            format!("[[routes]]\npath = \"/login/\"\nrespond = {{ status = 200 }}\nban = {ban}")
        };
        assert_eq!(error_keys(&route("{ after = 0 }")), ["routes[0].ban.after"]);
        assert!(error_keys(&route("false")).is_empty());

        // A route's own rule takes [ban]'s values for the keys it leaves out.
        let text = with(&format!(
            "[ban]\nafter = 7\nwithin = \"2m\"\n\n{}",
            route("{ strikes = [401] }")
        ));
        let snapshot = load(&text).unwrap_or_else(|errors| panic!("{errors:?}"));
        let bans = &snapshot.bans;
        let default = bans.default_rule.as_deref().unwrap();
        assert_eq!((default.after, default.strikes.as_slice()), (7, &[429][..]));
        let login = snapshot
            .router
            .lookup("localhost", "/login/", &http::Method::GET);
        let crate::router::Lookup::Found(login) = login else {
            panic!("the route is found");
        };
        let rule = login.ban.as_deref().unwrap();
        assert_eq!(rule.strikes, [401]);
        assert_eq!(rule.after, 7);
        assert_eq!(rule.within, std::time::Duration::from_secs(120));
        assert_eq!(&*rule.scope, "route0");
    }
}
