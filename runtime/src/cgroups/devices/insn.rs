//! The few eBPF instructions a device program needs, their encoding (`struct bpf_insn`,
//! include/uapi/linux/bpf.h), and a small assembler with forward labels.
//!
//! Registers are 64-bit; the 32-bit ALU forms zero the upper half. Jumps compare the whole
//! 64-bit register with the sign-extended immediate, so callers compare only with values
//! in `0..=i32::MAX` (a loaded u32 is zero-extended).

/// A register number, `r0` (return value) to `r10` (frame pointer).
pub type Reg = u8;

pub const R0: Reg = 0;
pub const R1: Reg = 1;
pub const R2: Reg = 2;
pub const R4: Reg = 4;
pub const R5: Reg = 5;
pub const R6: Reg = 6;

/// An index into the labels of an [`Assembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insn {
    /// `dst = *(u32 *)(src + off)`
    LoadWord { dst: Reg, src: Reg, off: i16 },
    /// `dst = imm` (32-bit)
    MovImm { dst: Reg, imm: i32 },
    /// `dst = src` (32-bit)
    MovReg { dst: Reg, src: Reg },
    /// `dst = src` (64-bit: what copies a pointer, such as the context)
    Mov64Reg { dst: Reg, src: Reg },
    /// `dst &= imm` (32-bit)
    AndImm { dst: Reg, imm: i32 },
    /// `dst >>= imm` (32-bit, logical)
    RshImm { dst: Reg, imm: i32 },
    /// `if dst == imm goto pc + 1 + off`
    JeqImm { dst: Reg, imm: i32, off: i16 },
    /// `if dst != imm goto pc + 1 + off`
    JneImm { dst: Reg, imm: i32, off: i16 },
    /// `goto pc + 1 + off`
    Ja { off: i16 },
    /// return `r0`
    Exit,
}

// Opcode parts: class, size and mode, operation, source.
const CLASS_LDX: u8 = 0x01;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const SIZE_W: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const ALU_AND: u8 = 0x50;
const ALU_RSH: u8 = 0x70;
const ALU_MOV: u8 = 0xb0;
const JMP_JA: u8 = 0x00;
const JMP_JEQ: u8 = 0x10;
const JMP_JNE: u8 = 0x50;
const JMP_EXIT: u8 = 0x90;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;

impl Insn {
    /// The 8 bytes of `struct bpf_insn`: code, dst and src registers in one byte (dst in
    /// the low nibble), offset, immediate; little-endian as on the machines we build for.
    pub fn encode(self) -> [u8; 8] {
        let (code, dst, src, off, imm) = match self {
            Insn::LoadWord { dst, src, off } => (CLASS_LDX | SIZE_W | MODE_MEM, dst, src, off, 0),
            Insn::MovImm { dst, imm } => (CLASS_ALU | ALU_MOV | SRC_K, dst, 0, 0, imm),
            Insn::MovReg { dst, src } => (CLASS_ALU | ALU_MOV | SRC_X, dst, src, 0, 0),
            Insn::Mov64Reg { dst, src } => (CLASS_ALU64 | ALU_MOV | SRC_X, dst, src, 0, 0),
            Insn::AndImm { dst, imm } => (CLASS_ALU | ALU_AND | SRC_K, dst, 0, 0, imm),
            Insn::RshImm { dst, imm } => (CLASS_ALU | ALU_RSH | SRC_K, dst, 0, 0, imm),
            Insn::JeqImm { dst, imm, off } => (CLASS_JMP | JMP_JEQ | SRC_K, dst, 0, off, imm),
            Insn::JneImm { dst, imm, off } => (CLASS_JMP | JMP_JNE | SRC_K, dst, 0, off, imm),
            Insn::Ja { off } => (CLASS_JMP | JMP_JA, 0, 0, off, 0),
            Insn::Exit => (CLASS_JMP | JMP_EXIT, 0, 0, 0, 0),
        };
        let mut out = [0u8; 8];
        out[0] = code;
        out[1] = (dst & 0x0f) | ((src & 0x0f) << 4);
        out[2..4].copy_from_slice(&off.to_le_bytes());
        out[4..8].copy_from_slice(&imm.to_le_bytes());
        out
    }
}

/// The program as the kernel wants it: the instructions' bytes back to back.
pub fn encode_all(program: &[Insn]) -> Vec<u8> {
    program.iter().flat_map(|i| i.encode()).collect()
}

/// Jumps whose target is not known yet.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Jeq { dst: Reg, imm: i32 },
    Jne { dst: Reg, imm: i32 },
    Ja,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    #[error("label {0} is used but never placed")]
    Unplaced(usize),
    #[error("a jump of {0} instructions does not fit in an eBPF offset")]
    TooFar(usize),
    #[error("the program jumps backwards, which the verifier refuses")]
    Backwards,
}

/// Builds a program with forward jumps to labels placed later.
#[derive(Debug, Default)]
pub struct Assembler {
    insns: Vec<Insn>,
    /// `(index of the jump, its label, what kind of jump)`.
    fixups: Vec<(usize, Label, Pending)>,
    /// Where each label was placed.
    labels: Vec<Option<usize>>,
}

impl Assembler {
    pub fn new() -> Assembler {
        Assembler::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// The next instruction is where `label` points.
    pub fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    pub fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    fn jump(&mut self, label: Label, kind: Pending) {
        self.fixups.push((self.insns.len(), label, kind));
        self.insns.push(Insn::Ja { off: 0 });
    }

    pub fn jeq(&mut self, dst: Reg, imm: i32, label: Label) {
        self.jump(label, Pending::Jeq { dst, imm });
    }

    pub fn jne(&mut self, dst: Reg, imm: i32, label: Label) {
        self.jump(label, Pending::Jne { dst, imm });
    }

    pub fn ja(&mut self, label: Label) {
        self.jump(label, Pending::Ja);
    }

    /// `r0 = value; exit`
    pub fn ret(&mut self, value: i32) {
        self.push(Insn::MovImm { dst: R0, imm: value });
        self.push(Insn::Exit);
    }

    /// Resolve every jump.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for (at, label, kind) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label.0].ok_or(AsmError::Unplaced(label.0))?;
            if target <= at {
                return Err(AsmError::Backwards);
            }
            let distance = target - at - 1;
            let off = i16::try_from(distance).map_err(|_| AsmError::TooFar(distance))?;
            self.insns[at] = match kind {
                Pending::Jeq { dst, imm } => Insn::JeqImm { dst, imm, off },
                Pending::Jne { dst, imm } => Insn::JneImm { dst, imm, off },
                Pending::Ja => Insn::Ja { off },
            };
        }
        Ok(self.insns)
    }
}

/// Runs a program of these instructions, for tests: the context is the 12 bytes of
/// `struct bpf_cgroup_dev_ctx` (`access_type`, `major`, `minor`), reached through `r1`.
#[cfg(test)]
pub mod interpreter {
    use super::*;

    /// What the program returned, or why it could not have run in the kernel.
    pub fn run(program: &[Insn], ctx: [u32; 3]) -> Result<u64, String> {
        const CTX: u64 = 0x1000;
        let mut regs = [0u64; 11];
        regs[R1 as usize] = CTX;
        let mut init = [false; 11];
        init[R1 as usize] = true;
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            let insn = *program.get(pc).ok_or_else(|| format!("pc {pc} runs off the end"))?;
            steps += 1;
            if steps > 100_000 {
                return Err("does not terminate".into());
            }
            let read = |r: Reg, regs: &[u64; 11], init: &[bool; 11]| -> Result<u64, String> {
                if init[r as usize] { Ok(regs[r as usize]) } else { Err(format!("r{r} read before it is written at pc {pc}")) }
            };
            let mut next = pc + 1;
            match insn {
                Insn::LoadWord { dst, src, off } => {
                    let base = read(src, &regs, &init)?;
                    let addr = base.wrapping_add(off as i64 as u64);
                    if base != CTX || !(CTX..CTX + 12).contains(&addr) || addr % 4 != 0 {
                        return Err(format!("load outside the context at pc {pc}"));
                    }
                    regs[dst as usize] = ctx[((addr - CTX) / 4) as usize] as u64;
                    init[dst as usize] = true;
                }
                Insn::MovImm { dst, imm } => {
                    regs[dst as usize] = imm as u32 as u64;
                    init[dst as usize] = true;
                }
                Insn::MovReg { dst, src } => {
                    regs[dst as usize] = read(src, &regs, &init)? as u32 as u64;
                    init[dst as usize] = true;
                }
                Insn::Mov64Reg { dst, src } => {
                    regs[dst as usize] = read(src, &regs, &init)?;
                    init[dst as usize] = true;
                }
                Insn::AndImm { dst, imm } => regs[dst as usize] = (read(dst, &regs, &init)? as u32 & imm as u32) as u64,
                Insn::RshImm { dst, imm } => regs[dst as usize] = ((read(dst, &regs, &init)? as u32) >> (imm as u32 & 31)) as u64,
                Insn::JeqImm { dst, imm, off } => {
                    if read(dst, &regs, &init)? == imm as i64 as u64 {
                        next = jump(pc, off)?;
                    }
                }
                Insn::JneImm { dst, imm, off } => {
                    if read(dst, &regs, &init)? != imm as i64 as u64 {
                        next = jump(pc, off)?;
                    }
                }
                Insn::Ja { off } => next = jump(pc, off)?,
                Insn::Exit => return read(R0, &regs, &init),
            }
            pc = next;
        }
    }

    fn jump(pc: usize, off: i16) -> Result<usize, String> {
        if off < 0 {
            return Err(format!("backward jump at pc {pc}"));
        }
        Ok(pc + 1 + off as usize)
    }

    /// Every instruction reachable from the start along some path (the verifier refuses
    /// unreachable ones).
    pub fn unreachable(program: &[Insn]) -> Vec<usize> {
        let mut seen = vec![false; program.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if pc >= program.len() || seen[pc] {
                continue;
            }
            seen[pc] = true;
            match program[pc] {
                Insn::Exit => {}
                Insn::Ja { off } => todo.push(pc + 1 + off as usize),
                Insn::JeqImm { off, .. } | Insn::JneImm { off, .. } => {
                    todo.push(pc + 1);
                    todo.push(pc + 1 + off as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        seen.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_layout() {
        // Values as include/uapi/linux/bpf.h and the kernel's filter.h macros produce them.
        assert_eq!(Insn::LoadWord { dst: R2, src: R1, off: 4 }.encode(), [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::Mov64Reg { dst: R6, src: R1 }.encode(), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::MovImm { dst: R0, imm: 1 }.encode(), [0xb4, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(Insn::MovReg { dst: R1, src: R4 }.encode(), [0xbc, 0x41, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::AndImm { dst: R2, imm: 0xffff }.encode(), [0x54, 0x02, 0, 0, 0xff, 0xff, 0, 0]);
        assert_eq!(Insn::RshImm { dst: R4, imm: 16 }.encode(), [0x74, 0x04, 0, 0, 16, 0, 0, 0]);
        assert_eq!(Insn::JeqImm { dst: R1, imm: 0, off: 3 }.encode(), [0x15, 0x01, 3, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::JneImm { dst: R4, imm: 136, off: 2 }.encode(), [0x55, 0x04, 2, 0, 136, 0, 0, 0]);
        assert_eq!(Insn::Ja { off: 5 }.encode(), [0x05, 0x00, 5, 0, 0, 0, 0, 0]);
        assert_eq!(Insn::Exit.encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_all(&[Insn::Exit, Insn::Exit]).len(), 16);
    }

    #[test]
    fn labels_resolve_to_forward_offsets() {
        let mut a = Assembler::new();
        let end = a.label();
        a.push(Insn::MovImm { dst: R2, imm: 7 });
        a.jne(R2, 7, end);
        a.ret(0);
        a.place(end);
        a.ret(1);
        let p = a.finish().unwrap();
        assert_eq!(p[1], Insn::JneImm { dst: R2, imm: 7, off: 2 });
        assert_eq!(interpreter::run(&p, [0, 0, 0]), Ok(0));
        assert!(interpreter::unreachable(&p).is_empty());
    }

    #[test]
    fn an_unplaced_label_is_an_error() {
        let mut a = Assembler::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(a.finish(), Err(AsmError::Unplaced(0)));
    }

    #[test]
    fn the_interpreter_catches_what_the_verifier_would() {
        assert!(interpreter::run(&[Insn::Exit], [0; 3]).unwrap_err().contains("r0 read before"));
        assert!(interpreter::run(&[Insn::LoadWord { dst: R2, src: R1, off: 12 }, Insn::Exit], [0; 3]).unwrap_err().contains("outside"));
        assert_eq!(interpreter::unreachable(&[Insn::MovImm { dst: R0, imm: 0 }, Insn::Exit, Insn::Exit]), vec![2]);
    }
}
