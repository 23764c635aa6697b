//! A headless Chromium driven over its DevTools protocol (the
//! `headless_chrome` crate), for tests of the web page: one tab, bounded
//! waits on what its JavaScript says, typing and keys as a person's,
//! screenshots, a phone's viewport, and every console error, uncaught
//! exception, Content-Security-Policy report and dialog the page caused.
//!
//! The browser is Debian's `chromium` at [`CHROMIUM`]; nothing is
//! downloaded. If it is missing, [`Browser::launch`] fails the test saying
//! so: `scripts/test` installs it.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Emulation, Input, Log, Page, Runtime};
use headless_chrome::{LaunchOptions, Tab};
use serde_json::Value;

use crate::temp::TempDir;
use crate::wait::IO_TIMEOUT;

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Flags that keep a headless Chromium quiet and self-contained here (as
/// root, without a GPU, with no network but loopback).
const FLAGS: [&str; 6] = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the page reported that a test should see: console errors,
/// exceptions, log entries of level error, CSP violations, dialogs.
#[derive(Default)]
struct Reports {
    problems: Vec<String>,
    dialogs: Vec<String>,
}

/// A headless Chromium with one tab, its profile in a fresh temporary
/// directory; the browser is ended when dropped.
pub struct Browser {
    tab: Arc<Tab>,
    reports: Arc<Mutex<Reports>>,
    // Dropped in this order: the browser first, then its profile.
    _browser: headless_chrome::Browser,
    _profile: TempDir,
}

impl Browser {
    /// Starts Chromium headless with one tab whose viewport is `width` ×
    /// `height` CSS pixels, its local time UTC (so that a test knows what a time shows),
    /// that reports console errors, exceptions and dialogs (see
    /// [`Browser::problems`], [`Browser::dialogs`]); panics if Chromium is
    /// not installed or does not start.
    pub fn launch(width: u32, height: u32) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser tests need Debian's chromium package \
             (scripts/test installs it: apt-get install -y chromium)"
        );
        let profile = TempDir::new("chromium-profile");
        let options = LaunchOptions::default_builder()
            .path(Some(CHROMIUM.into()))
            .headless(true)
            .sandbox(false)
            .user_data_dir(Some(profile.0.clone()))
            .window_size(Some((width, height)))
            .idle_browser_timeout(Duration::from_secs(120))
            .args(FLAGS.iter().map(OsStr::new).collect())
            .build()
            .unwrap_or_else(|e| panic!("Chromium's launch options: {e}"));
        let browser = headless_chrome::Browser::new(options)
            .unwrap_or_else(|e| panic!("start {CHROMIUM}: {e}"));
        let tab = browser
            .new_tab()
            .unwrap_or_else(|e| panic!("open a Chromium tab: {e}"));
        tab.set_default_timeout(CALL_TIMEOUT);
        let reports = Arc::new(Mutex::new(Reports::default()));
        let sink = Arc::clone(&reports);
        tab.add_event_listener(Arc::new(move |event: &Event| {
            let mut reports = sink.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(problem) = problem(event) {
                reports.problems.push(problem);
            }
            if let Event::PageJavascriptDialogOpening(dialog) = event {
                reports.dialogs.push(dialog.params.message.clone());
            }
        }))
        .unwrap_or_else(|e| panic!("listen to the tab's events: {e}"));
        tab.enable_runtime()
            .and_then(|tab| tab.enable_log())
            .unwrap_or_else(|e| panic!("enable the tab's console and log: {e}"));
        tab.call_method(Emulation::SetTimezoneOverride {
            timezone_id: "UTC".to_owned(),
        })
        .unwrap_or_else(|e| panic!("set the tab's time zone: {e}"));
        let browser = Browser {
            tab,
            reports,
            _browser: browser,
            _profile: profile,
        };
        // The window's frame takes some of its height: the viewport is
        // made exactly the size asked for.
        browser.set_viewport(width, height, false);
        browser
    }

    /// Opens `url` and waits until it has loaded.
    pub fn open(&self, url: &str) {
        self.tab
            .navigate_to(url)
            .and_then(|tab| tab.wait_until_navigated())
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The value of the JavaScript `expression` in the page (as JSON);
    /// panics if it throws.
    pub fn eval(&self, expression: &str) -> Value {
        let result = self
            .tab
            .call_method(Runtime::Evaluate {
                expression: expression.to_owned(),
                object_group: None,
                include_command_line_api: None,
                silent: Some(true),
                context_id: None,
                return_by_value: Some(true),
                generate_preview: None,
                user_gesture: Some(true),
                await_promise: Some(false),
                throw_on_side_effect: None,
                timeout: None,
                disable_breaks: None,
                repl_mode: None,
                allow_unsafe_eval_blocked_by_csp: None,
                unique_context_id: None,
                serialization_options: None,
            })
            .unwrap_or_else(|e| panic!("evaluate {expression:?}: {e}"));
        if let Some(details) = result.exception_details {
            panic!("{expression:?} threw: {details:?}");
        }
        result.result.value.unwrap_or(Value::Null)
    }

    /// The string value of `expression`; panics if it is not a string.
    pub fn text(&self, expression: &str) -> String {
        match self.eval(expression) {
            Value::String(text) => text,
            other => panic!("{expression:?} is {other}, not a string"),
        }
    }

    /// Waits until `condition` (a JavaScript expression) is true in the
    /// page, at most [`IO_TIMEOUT`]; panics naming `what` and showing what
    /// `context` (a JavaScript expression, such as the conversation's
    /// text) is then.
    pub fn wait_for(&self, what: &str, condition: &str, context: &str) {
        let timeout = IO_TIMEOUT;
        let deadline = Instant::now() + timeout;
        while self.eval(condition) != Value::Bool(true) {
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for {what} ({condition}); {context} is {}",
                    self.eval(context)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `text` into the focused element, as a keyboard's input method
    /// would (one input event).
    pub fn type_text(&self, text: &str) {
        self.tab
            .call_method(Input::InsertText {
                text: text.to_owned(),
            })
            .unwrap_or_else(|e| panic!("type {text:?}: {e}"));
    }

    /// Presses and releases `key` (`Enter`, `Tab`, `ArrowUp`, ...).
    pub fn press(&self, key: &str) {
        self.tab
            .press_key(key)
            .unwrap_or_else(|e| panic!("press {key}: {e}"));
    }

    /// Clicks the middle of the first element matching `selector` with the
    /// left mouse button (pressed and released there); panics if no
    /// element matches.
    pub fn click(&self, selector: &str) {
        let selector_literal = Value::String(selector.to_owned());
        let centre = self.eval(&format!(
            "(() => {{ const element = document.querySelector({selector_literal}); \
             if (!element) return null; const r = element.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ));
        let (Some(x), Some(y)) = (centre[0].as_f64(), centre[1].as_f64()) else {
            panic!("click {selector}: no such element");
        };
        for kind in [
            Input::DispatchMouseEventTypeOption::MousePressed,
            Input::DispatchMouseEventTypeOption::MouseReleased,
        ] {
            self.tab
                .call_method(Input::DispatchMouseEvent {
                    Type: kind,
                    x,
                    y,
                    modifiers: None,
                    timestamp: None,
                    button: Some(Input::MouseButton::Left),
                    buttons: None,
                    click_count: Some(1),
                    force: None,
                    tangential_pressure: None,
                    tilt_x: None,
                    tilt_y: None,
                    twist: None,
                    delta_x: None,
                    delta_y: None,
                    pointer_Type: None,
                })
                .unwrap_or_else(|e| panic!("click {selector}: {e}"));
        }
    }

    /// Makes the viewport `width` × `height` CSS pixels, as a phone's
    /// (`mobile`: touch, the meta viewport honoured) or a desktop's.
    pub fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        self.tab
            .call_method(Emulation::SetDeviceMetricsOverride {
                width,
                height,
                device_scale_factor: 1.0,
                mobile,
                scale: None,
                screen_width: None,
                screen_height: None,
                position_x: None,
                position_y: None,
                dont_set_visible_size: None,
                screen_orientation: None,
                viewport: None,
                display_feature: None,
                device_posture: None,
            })
            .unwrap_or_else(|e| panic!("set the viewport to {width}×{height}: {e}"));
    }

    /// A PNG of the viewport as it is now.
    pub fn screenshot(&self) -> Vec<u8> {
        self.tab
            .capture_screenshot(Page::CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap_or_else(|e| panic!("take a screenshot: {e}"))
    }

    /// Console errors and assertions, uncaught exceptions, log entries of
    /// level error (failed loads, CSP violations among them) and any other
    /// report of a Content Security Policy, each as one line, since the
    /// launch.
    pub fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }

    /// Forgets the problems reported so far.
    pub fn clear_problems(&self) {
        self.lock().problems.clear();
    }

    /// The messages of the dialogs (`alert`, `confirm`, `prompt`) the page
    /// opened since the launch.
    pub fn dialogs(&self) -> Vec<String> {
        self.lock().dialogs.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `event` as one line if it reports something wrong with the page.
fn problem(event: &Event) -> Option<String> {
    match event {
        Event::RuntimeConsoleAPICalled(call) => {
            let params = &call.params;
            let text = params
                .args
                .iter()
                .map(|arg| {
                    arg.value
                        .as_ref()
                        .map_or_else(|| format!("{:?}", arg.description), Value::to_string)
                })
                .collect::<Vec<_>>()
                .join(" ");
            let error = matches!(
                params.Type,
                Runtime::ConsoleAPICalledEventTypeOption::Error
                    | Runtime::ConsoleAPICalledEventTypeOption::Assert
            );
            (error || is_csp(&text)).then(|| format!("console.{:?}: {text}", params.Type))
        }
        Event::RuntimeExceptionThrown(thrown) => {
            let details = &thrown.params.exception_details;
            let description = details
                .exception
                .as_ref()
                .and_then(|exception| exception.description.clone())
                .unwrap_or_else(|| details.text.clone());
            Some(format!(
                "exception at {}:{}: {description}",
                details.line_number, details.column_number
            ))
        }
        Event::LogEntryAdded(added) => {
            let entry = &added.params.entry;
            let error = matches!(entry.level, Log::LogEntryLevel::Error);
            (error || is_csp(&entry.text)).then(|| {
                format!(
                    "log {:?} {:?}: {} {}",
                    entry.source,
                    entry.level,
                    entry.text,
                    entry.url.as_deref().unwrap_or("")
                )
            })
        }
        _ => None,
    }
}

/// Whether `text` is Chromium's report of a Content Security Policy.
fn is_csp(text: &str) -> bool {
    text.contains("Content Security Policy") || text.contains("Content-Security-Policy")
}
