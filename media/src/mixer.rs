//! The conference/supervision mixer, sans-IO: participants with roles, a matrix of
//! who hears whom derived from roles, supervisor modes and per-participant flags
//! (mute, deaf, hold), and one 20 ms tick that mixes each participant's output with
//! saturation ("sum of everything I hear", never myself). Recording is a tap on the
//! same matrix: stereo, customer on the left, the agent side the customer heard on
//! the right; whisper audio never enters it.

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
pub type Frame = [i16; FRAME];
pub const SILENCE: Frame = [0; FRAME];

/// What a supervisor's audio does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// The supervisor hears customer and agent; nobody hears the supervisor.
    Listen,
    /// The agent (and other supervisors) also hear the supervisor; the customer does not.
    Whisper,
    /// Everyone hears the supervisor.
    Barge,
    /// Not a supervisor: a conference party (the mixer's [`Role::Member`]).
    Member,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer,
    Agent,
    Supervisor(MonitorMode),
    /// A conference member: hears and is heard by every non-supervisor party.
    Member,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantId(pub usize);

#[derive(Debug, Clone)]
struct Participant {
    role: Role,
    muted: bool,
    deaf: bool,
    held: bool,
    input: Frame,
    has_input: bool,
}

/// One media session's mixer.
#[derive(Debug, Default)]
pub struct Mixer {
    parts: Vec<Option<Participant>>,
    /// What a held participant hears (the queue's hold audio), for this tick.
    hold_audio: Option<Frame>,
    /// Recording paused: both channels are silence.
    pub recording_paused: bool,
}

fn add_into(acc: &mut [i32; FRAME], f: &Frame) {
    for (a, s) in acc.iter_mut().zip(f.iter()) {
        *a += *s as i32;
    }
}

fn saturate(acc: &[i32; FRAME], out: &mut Frame) {
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = (*a).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
}

impl Mixer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, role: Role) -> ParticipantId {
        let p = Participant {
            role,
            muted: false,
            deaf: false,
            held: false,
            input: SILENCE,
            has_input: false,
        };
        if let Some(i) = self.parts.iter().position(Option::is_none) {
            self.parts[i] = Some(p);
            return ParticipantId(i);
        }
        self.parts.push(Some(p));
        ParticipantId(self.parts.len() - 1)
    }

    pub fn remove(&mut self, id: ParticipantId) {
        if let Some(p) = self.parts.get_mut(id.0) {
            *p = None;
        }
    }

    fn part(&mut self, id: ParticipantId) -> Option<&mut Participant> {
        self.parts.get_mut(id.0).and_then(Option::as_mut)
    }

    pub fn role(&self, id: ParticipantId) -> Option<Role> {
        self.parts
            .get(id.0)
            .and_then(Option::as_ref)
            .map(|p| p.role)
    }

    pub fn set_mode(&mut self, id: ParticipantId, mode: MonitorMode) {
        if let Some(p) = self.part(id) {
            if let Role::Supervisor(_) = p.role {
                p.role = Role::Supervisor(mode);
            }
        }
    }

    pub fn set_muted(&mut self, id: ParticipantId, on: bool) {
        if let Some(p) = self.part(id) {
            p.muted = on;
        }
    }

    pub fn set_deaf(&mut self, id: ParticipantId, on: bool) {
        if let Some(p) = self.part(id) {
            p.deaf = on;
        }
    }

    pub fn set_held(&mut self, id: ParticipantId, on: bool) {
        if let Some(p) = self.part(id) {
            p.held = on;
        }
    }

    pub fn is_held(&self, id: ParticipantId) -> bool {
        self.parts
            .get(id.0)
            .and_then(Option::as_ref)
            .is_some_and(|p| p.held)
    }

    /// The hold audio frame of this tick (None: held parties hear silence).
    pub fn set_hold_audio(&mut self, f: Option<Frame>) {
        self.hold_audio = f;
    }

    /// Whether `listener` hears `source` (the matrix).
    pub fn hears(&self, listener: ParticipantId, source: ParticipantId) -> bool {
        if listener == source {
            return false;
        }
        let (Some(l), Some(s)) = (
            self.parts.get(listener.0).and_then(Option::as_ref),
            self.parts.get(source.0).and_then(Option::as_ref),
        ) else {
            return false;
        };
        if l.deaf || l.held || s.muted || s.held {
            return false;
        }
        match (l.role, s.role) {
            // A supervisor's voice: by mode.
            (_, Role::Supervisor(MonitorMode::Listen)) => false,
            (Role::Customer | Role::Member, Role::Supervisor(MonitorMode::Whisper)) => false,
            (_, Role::Supervisor(_)) => true,
            // Everyone (supervisors included) hears the call's parties.
            _ => true,
        }
    }

    /// This tick's frame from a participant (after its jitter buffer).
    pub fn put(&mut self, id: ParticipantId, f: &Frame) {
        if let Some(p) = self.part(id) {
            p.input = *f;
            p.has_input = true;
        }
    }

    /// Mix one tick: `out(id, frame)` for every participant, then inputs reset.
    pub fn mix(&mut self, mut out: impl FnMut(ParticipantId, &Frame)) {
        let n = self.parts.len();
        let mut acc = [0i32; FRAME];
        let mut frame = SILENCE;
        for l in 0..n {
            let Some(lp) = self.parts[l].as_ref() else {
                continue;
            };
            acc.fill(0);
            if lp.held && !lp.deaf {
                if let Some(h) = &self.hold_audio {
                    add_into(&mut acc, h);
                }
            }
            for s in 0..n {
                if self.hears(ParticipantId(l), ParticipantId(s)) {
                    if let Some(sp) = self.parts[s].as_ref().filter(|p| p.has_input) {
                        add_into(&mut acc, &sp.input);
                    }
                }
            }
            saturate(&acc, &mut frame);
            out(ParticipantId(l), &frame);
        }
    }

    /// The recording's stereo frame of this tick: left = customer, right = the agent
    /// and every barging supervisor (what the customer heard from the agent side).
    /// Whispering and listening supervisors and hold audio are never recorded.
    pub fn record(&self) -> (Frame, Frame) {
        let (mut left, mut right) = ([0i32; FRAME], [0i32; FRAME]);
        if !self.recording_paused {
            for p in self
                .parts
                .iter()
                .flatten()
                .filter(|p| p.has_input && !p.muted && !p.held)
            {
                match p.role {
                    Role::Customer => add_into(&mut left, &p.input),
                    Role::Agent | Role::Supervisor(MonitorMode::Barge) | Role::Member => {
                        add_into(&mut right, &p.input)
                    }
                    Role::Supervisor(_) => {}
                }
            }
        }
        let (mut l, mut r) = (SILENCE, SILENCE);
        saturate(&left, &mut l);
        saturate(&right, &mut r);
        (l, r)
    }

    /// Forget this tick's inputs (call after `mix` and `record`).
    pub fn end_tick(&mut self) {
        for p in self.parts.iter_mut().flatten() {
            p.has_input = false;
        }
    }
}
