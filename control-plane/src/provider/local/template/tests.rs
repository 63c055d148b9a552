use super::*;

#[test]
fn the_environment_is_the_package_list() {
    let packages = environment_packages();
    for expected in ["python-is-python3", "nodejs", "git", "ripgrep", "tmux"] {
        assert!(
            packages.iter().any(|p| p == expected),
            "{expected}: {packages:?}"
        );
    }
    assert!(
        packages
            .iter()
            .all(|p| !p.contains('#') && !p.contains(' '))
    );
    check_packages(&packages).unwrap();
}

#[test]
fn package_names_cannot_be_options_or_lists() {
    for bad in [
        "-x",
        "--include=evil",
        "a,b",
        "a b",
        "A",
        "x",
        "a/b",
        "$(id)",
    ] {
        assert!(check_packages(&[bad.to_string()]).is_err(), "{bad:?}");
    }
    check_packages(&["g++".into(), "python3.11".into(), "libc6-dev".into()]).unwrap();
}

#[test]
fn apt_names_the_unknown_package() {
    assert_eq!(
        unknown_package("E: Unable to locate package nosuch-pkg"),
        Some("nosuch-pkg")
    );
    assert_eq!(unknown_package("I: downloading packages with apt..."), None);
}
