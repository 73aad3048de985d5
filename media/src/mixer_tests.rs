//! Who hears whom, proved with tones: customer 440 Hz, agent 1100 Hz, supervisor
//! 1700 Hz (a second supervisor 2300 Hz, hold audio 700 Hz); a Goertzel detector on
//! what each participant receives and on the recording's two channels.

use crate::mixer::{Frame, Mixer, MonitorMode, ParticipantId, Role, FRAME};
use crate::tone::{goertzel, Tone};
use std::collections::HashMap;

const TICKS: usize = 10;

struct Scene {
    m: Mixer,
    tones: Vec<(ParticipantId, Tone)>,
    hold: Option<Tone>,
}

impl Scene {
    fn new() -> (Scene, ParticipantId, ParticipantId, ParticipantId) {
        let mut m = Mixer::new();
        let c = m.add(Role::Customer);
        let a = m.add(Role::Agent);
        let s = m.add(Role::Supervisor(MonitorMode::Listen));
        let tones = vec![
            (c, Tone::new(440.0, 8000)),
            (a, Tone::new(1100.0, 8000)),
            (s, Tone::new(1700.0, 8000)),
        ];
        (
            Scene {
                m,
                tones,
                hold: None,
            },
            c,
            a,
            s,
        )
    }

    /// Run TICKS ticks; what each participant heard and the recording channels.
    fn run(&mut self) -> (HashMap<usize, Vec<i16>>, Vec<i16>, Vec<i16>) {
        let mut heard: HashMap<usize, Vec<i16>> = HashMap::new();
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for _ in 0..TICKS {
            for (id, t) in self.tones.iter_mut() {
                let mut f: Frame = [0; FRAME];
                for x in f.iter_mut() {
                    *x = t.next_sample();
                }
                self.m.put(*id, &f);
            }
            let hold = self.hold.as_mut().map(|t| {
                let mut f: Frame = [0; FRAME];
                for x in f.iter_mut() {
                    *x = t.next_sample();
                }
                f
            });
            self.m.set_hold_audio(hold);
            self.m
                .mix(|id, f| heard.entry(id.0).or_default().extend_from_slice(f));
            let (l, r) = self.m.record();
            left.extend_from_slice(&l);
            right.extend_from_slice(&r);
            self.m.end_tick();
        }
        (heard, left, right)
    }
}

/// The set of test tones present in `pcm`.
fn tones_in(pcm: &[i16]) -> Vec<u32> {
    [440u32, 700, 1100, 1700, 2300]
        .into_iter()
        .filter(|hz| goertzel(pcm, *hz as f64, 8000) > 1.0e6)
        .collect()
}

fn hear(h: &HashMap<usize, Vec<i16>>, id: ParticipantId) -> Vec<u32> {
    tones_in(&h[&id.0])
}

#[test]
fn listen_supervisor_hears_both_and_nobody_hears_the_supervisor() {
    let (mut sc, c, a, s) = Scene::new();
    let (h, left, right) = sc.run();
    assert_eq!(hear(&h, c), vec![1100]);
    assert_eq!(hear(&h, a), vec![440]);
    assert_eq!(hear(&h, s), vec![440, 1100]);
    assert_eq!(tones_in(&left), vec![440]);
    assert_eq!(tones_in(&right), vec![1100]);
}

#[test]
fn whisper_reaches_the_agent_only_and_never_the_recording() {
    let (mut sc, c, a, s) = Scene::new();
    sc.m.set_mode(s, MonitorMode::Whisper);
    let (h, left, right) = sc.run();
    assert_eq!(
        hear(&h, a),
        vec![440, 1700],
        "agent hears customer + supervisor"
    );
    assert_eq!(
        hear(&h, c),
        vec![1100],
        "customer hears the agent and no 1700"
    );
    assert_eq!(hear(&h, s), vec![440, 1100]);
    assert_eq!(tones_in(&left), vec![440]);
    assert_eq!(
        tones_in(&right),
        vec![1100],
        "whisper never enters the recording"
    );
}

#[test]
fn barge_is_heard_by_everyone_and_recorded_on_the_agent_side() {
    let (mut sc, c, a, s) = Scene::new();
    sc.m.set_mode(s, MonitorMode::Barge);
    let (h, left, right) = sc.run();
    assert_eq!(hear(&h, c), vec![1100, 1700]);
    assert_eq!(hear(&h, a), vec![440, 1700]);
    assert_eq!(hear(&h, s), vec![440, 1100]);
    assert_eq!(tones_in(&left), vec![440]);
    assert_eq!(tones_in(&right), vec![1100, 1700]);
}

#[test]
fn mode_transitions_and_leaving_do_not_disturb_the_call() {
    let (mut sc, c, a, s) = Scene::new();
    for (mode, customer, agent) in [
        (MonitorMode::Whisper, vec![1100], vec![440, 1700]),
        (MonitorMode::Barge, vec![1100, 1700], vec![440, 1700]),
        (MonitorMode::Listen, vec![1100], vec![440]),
        (MonitorMode::Whisper, vec![1100], vec![440, 1700]),
    ] {
        sc.m.set_mode(s, mode);
        let (h, _, _) = sc.run();
        assert_eq!(hear(&h, c), customer, "{mode:?}");
        assert_eq!(hear(&h, a), agent, "{mode:?}");
    }
    sc.m.remove(s);
    sc.tones.retain(|(id, _)| *id != s);
    let (h, _, _) = sc.run();
    assert_eq!(hear(&h, c), vec![1100]);
    assert_eq!(hear(&h, a), vec![440]);
    assert!(!h.contains_key(&s.0));
}

#[test]
fn two_supervisors_one_whispering_one_listening() {
    let (mut sc, c, a, s1) = Scene::new();
    let s2 = sc.m.add(Role::Supervisor(MonitorMode::Listen));
    sc.tones.push((s2, Tone::new(2300.0, 8000)));
    sc.m.set_mode(s1, MonitorMode::Whisper);
    let (h, _, right) = sc.run();
    assert_eq!(
        hear(&h, a),
        vec![440, 1700],
        "the agent hears the whisper, not the listener"
    );
    assert_eq!(hear(&h, c), vec![1100]);
    assert_eq!(
        hear(&h, s2),
        vec![440, 1100, 1700],
        "a listening supervisor hears what the agent hears"
    );
    assert_eq!(hear(&h, s1), vec![440, 1100]);
    assert_eq!(tones_in(&right), vec![1100]);
}

#[test]
fn hold_mute_and_deaf_are_matrix_edits() {
    let (mut sc, c, a, _s) = Scene::new();
    sc.hold = Some(Tone::new(700.0, 8000));
    sc.m.set_held(c, true);
    let (h, left, _) = sc.run();
    assert_eq!(
        hear(&h, c),
        vec![700],
        "the held customer hears hold audio only"
    );
    assert_eq!(
        hear(&h, a),
        Vec::<u32>::new(),
        "nobody hears the held party"
    );
    assert_eq!(
        tones_in(&left),
        Vec::<u32>::new(),
        "hold audio is not recorded"
    );
    sc.m.set_held(c, false);
    sc.m.set_muted(a, true);
    let (h, _, right) = sc.run();
    assert_eq!(
        hear(&h, c),
        Vec::<u32>::new(),
        "muted agent is heard by nobody"
    );
    assert_eq!(tones_in(&right), Vec::<u32>::new());
    sc.m.set_muted(a, false);
    sc.m.set_deaf(c, true);
    let (h, _, _) = sc.run();
    assert_eq!(
        hear(&h, c),
        Vec::<u32>::new(),
        "deaf customer hears nothing"
    );
    assert_eq!(hear(&h, a), vec![440], "but is still heard");
}

#[test]
fn paused_recording_is_silence_and_sums_saturate() {
    let (mut sc, _c, _a, _s) = Scene::new();
    sc.m.recording_paused = true;
    let (_, left, right) = sc.run();
    assert!(left.iter().chain(right.iter()).all(|x| *x == 0));
    let mut m = Mixer::new();
    let x = m.add(Role::Member);
    let y = m.add(Role::Member);
    let z = m.add(Role::Member);
    m.put(x, &[30_000; FRAME]);
    m.put(y, &[30_000; FRAME]);
    m.put(z, &[0; FRAME]);
    let mut got = Vec::new();
    m.mix(|id, f| {
        if id == z {
            got.extend_from_slice(f)
        }
    });
    assert!(got.iter().all(|s| *s == i16::MAX), "clamped, not wrapped");
}
